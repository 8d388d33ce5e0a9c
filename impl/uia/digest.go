package uia

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
)

func setDigest(ids []string) string {
	s := append([]string(nil), ids...)
	sort.Strings(s)
	h := sha256.New()
	prev := ""
	for i, id := range s {
		if i > 0 && id == prev {
			continue
		}
		prev = id
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
