// Package appservice is the domain of application services (bridges): their
// registration files, the namespaces they claim, and identity assertion
// (an appservice acting as a user, and as one of that user's devices, v1.17).
//
// Registrations come from YAML files named in the configuration
// (--appservice-config, repeatable). They are read and checked at start-up;
// a bad file stops start-up with one line naming the file and the field.
// Registry.Reload re-reads them (on SIGHUP) and swaps the whole set at
// once; a set with a bad file is refused and the old one kept. Every
// process reads the same files, so nothing about appservices lives only in
// one process's memory; their users and devices are ordinary rows.
package appservice

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Namespace is one entry of a registration's namespaces.
type Namespace struct {
	Exclusive bool   `yaml:"exclusive"`
	Regex     string `yaml:"regex"`
	re        *regexp.Regexp
}

// Registration is one application service, as its registration file says
// (the standard fields; unknown ones, such as bridges' MSC flags, are
// ignored).
type Registration struct {
	ID              string `yaml:"id"`
	URL             string `yaml:"url"`
	ASToken         string `yaml:"as_token"`
	HSToken         string `yaml:"hs_token"`
	SenderLocalpart string `yaml:"sender_localpart"`
	// RateLimited: the appservice's requests are rate limited like a
	// user's (default false: not limited).
	RateLimited *bool `yaml:"rate_limited"`
	Namespaces  struct {
		Users   []Namespace `yaml:"users"`
		Aliases []Namespace `yaml:"aliases"`
		Rooms   []Namespace `yaml:"rooms"`
	} `yaml:"namespaces"`
	Protocols        []string `yaml:"protocols"`
	ReceiveEphemeral bool     `yaml:"receive_ephemeral"`

	// File is the file the registration was read from.
	File string `yaml:"-"`
	// Sender is the full user ID of sender_localpart.
	Sender    string   `yaml:"-"`
	tokenHash [32]byte // SHA-256 of ASToken
}

// Limited reports whether the appservice's requests are rate limited.
func (r *Registration) Limited() bool { return r.RateLimited != nil && *r.RateLimited }

// localpartRE is the user-ID localpart grammar (as for registration).
var localpartRE = regexp.MustCompile(`\A[a-z0-9._=\-/]+\z`)

// fieldError is a problem with one field of a registration file.
func fieldError(file, field, msg string) error {
	return fmt.Errorf("appservice-config %s: %s: %s", file, field, msg)
}

// LoadFile reads and checks one registration file; serverName completes
// the sender's user ID.
func LoadFile(path, serverName string) (*Registration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("appservice-config %s: %v", path, err)
	}
	return Parse(path, b, serverName)
}

// Parse checks one registration (file names it in errors).
func Parse(file string, b []byte, serverName string) (*Registration, error) {
	r := &Registration{File: file}
	if err := yaml.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("appservice-config %s: not a registration file: %s", file, oneLine(err.Error()))
	}
	if strings.TrimSpace(r.ID) == "" {
		return nil, fieldError(file, "id", "must be set")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fieldError(file, "url", fmt.Sprintf("%q is not an http(s) URL (leave it empty or null for none)", r.URL))
		}
	}
	if r.ASToken == "" {
		return nil, fieldError(file, "as_token", "must be set")
	}
	if r.HSToken == "" {
		return nil, fieldError(file, "hs_token", "must be set")
	}
	if r.ASToken == r.HSToken {
		return nil, fieldError(file, "hs_token", "must differ from as_token")
	}
	if !localpartRE.MatchString(r.SenderLocalpart) {
		return nil, fieldError(file, "sender_localpart", fmt.Sprintf("%q is not a user ID localpart (a-z, 0-9, . _ = - /)", r.SenderLocalpart))
	}
	r.Sender = "@" + r.SenderLocalpart + ":" + serverName
	for _, k := range []struct {
		kind string
		list []Namespace
	}{{"users", r.Namespaces.Users}, {"aliases", r.Namespaces.Aliases}, {"rooms", r.Namespaces.Rooms}} {
		kind, list := k.kind, k.list
		for i := range list {
			ns := &list[i]
			field := fmt.Sprintf("namespaces.%s[%d].regex", kind, i)
			if ns.Regex == "" {
				return nil, fieldError(file, field, "must be set")
			}
			// Matched from the start of the ID, as Synapse does (bridges'
			// regexes are written for that); an explicit $ anchors the end.
			re, err := regexp.Compile(`^(?:` + ns.Regex + `)`)
			if err != nil {
				return nil, fieldError(file, field, fmt.Sprintf("%q does not compile: %s", ns.Regex, oneLine(err.Error())))
			}
			ns.re = re
		}
	}
	r.tokenHash = sha256.Sum256([]byte(r.ASToken))
	return r, nil
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// InNamespace reports whether userID is the appservice's sender or matches
// one of its user namespaces (exclusive or not).
func (r *Registration) InNamespace(userID string) bool {
	if userID == r.Sender {
		return true
	}
	for _, ns := range r.Namespaces.Users {
		if ns.re.MatchString(userID) {
			return true
		}
	}
	return false
}

// Exclusive reports whether userID is in one of the appservice's exclusive
// user namespaces, or is its sender.
func (r *Registration) Exclusive(userID string) bool {
	if userID == r.Sender {
		return true
	}
	for _, ns := range r.Namespaces.Users {
		if ns.Exclusive && ns.re.MatchString(userID) {
			return true
		}
	}
	return false
}

// checkSet refuses registrations that share an id, an as_token or a sender
// (the spec: id and as_token MUST be unique), naming the later file.
func checkSet(regs []*Registration) error {
	ids := map[string]string{}
	toks := map[[32]byte]string{}
	senders := map[string]string{}
	for _, r := range regs {
		if f, dup := ids[r.ID]; dup {
			return fieldError(r.File, "id", fmt.Sprintf("%q is also the id of %s", r.ID, f))
		}
		if f, dup := toks[r.tokenHash]; dup {
			return fieldError(r.File, "as_token", "is also the as_token of "+f)
		}
		if f, dup := senders[r.Sender]; dup {
			return fieldError(r.File, "sender_localpart", fmt.Sprintf("%q is also the sender of %s", r.SenderLocalpart, f))
		}
		ids[r.ID], toks[r.tokenHash], senders[r.Sender] = r.File, r.File, r.File
	}
	return nil
}
