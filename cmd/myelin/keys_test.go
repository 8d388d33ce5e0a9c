package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func TestKeysRotateRetiresTheCurrentKey(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		dsn := testenv.NewDatabase(t, b)
		ctx := context.Background()
		st, err := storage.Open(ctx, dsn, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		id := &federation.Identity{Store: st, ServerName: "a.test", KeyValidity: config.Defaults().KeyValidity}
		if err := id.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		first, _ := id.Current(ctx)

		var out, errOut bytes.Buffer
		if code := run([]string{"keys", "--database", dsn, "--server-name", "a.test", "rotate"}, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		if !strings.Contains(out.String(), "retired "+string(first.ID)) {
			t.Fatalf("output %q does not name the retired key", out.String())
		}
		doc, err := (&federation.Identity{Store: st, ServerName: "a.test", KeyValidity: config.Defaults().KeyValidity}).KeyDocument(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			VerifyKeys    map[string]any `json:"verify_keys"`
			OldVerifyKeys map[string]any `json:"old_verify_keys"`
		}
		_ = json.Unmarshal(doc, &d)
		if _, ok := d.OldVerifyKeys[string(first.ID)]; !ok || len(d.VerifyKeys) != 1 || d.VerifyKeys[string(first.ID)] != nil {
			t.Fatalf("after rotate: %s", doc)
		}
		if code := run([]string{"keys", "--database", dsn, "spin"}, &out, &errOut); code == 0 {
			t.Fatal("an unknown keys subcommand succeeded")
		}
	})
}
