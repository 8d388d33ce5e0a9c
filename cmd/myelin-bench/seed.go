package main

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

const (
	benchPassword = "bench-password-1"
	bulkDevices   = 10_000
	// loginAccounts is how many accounts the login scenario logs in to:
	// each load worker its own (worker mod loginAccounts), as in a burst
	// of logins after an outage, where every account logs in at most a
	// few times (production rate limits allow no more). Logins of one
	// account wait on each other for its device-list stream position.
	loginAccounts = 64
)

// sizes are the device counts of the cost-growth scenario.
var sizes = []int{1, 10, 100, 1000}

// seeded is what the scenarios need to know about the seeded database.
type seeded struct {
	Token     string         // @bench's token; @bench has 3 devices
	DeviceID  string         // the device of Token
	UserID    string         // @bench
	Tokens    []string       // the tokens of @bench's devices (Token first)
	BySize    map[int]string // token of @devN, who has N devices
	BulkToken string         // @bulk's token (its device is never deleted)
	Bare      bareFixture
}

// seed fills a freshly migrated database directly (as the admin CLI
// would): users with the server's argon2id parameters, devices and tokens.
func seed(ctx context.Context, st *storage.Store, cfg *config.Config) (*seeded, error) {
	params := passwords.DefaultParams()
	params.MemoryKiB, params.Iterations, params.Parallelism = cfg.Argon2.MemoryKiB, cfg.Argon2.Iterations, cfg.Argon2.Parallelism
	hash, err := passwords.New(params, nil).Hash(benchPassword)
	if err != nil {
		return nil, err
	}
	s := &seeded{BySize: map[int]string{}, Bare: bareFixture{}}
	user := func(local string) string { return "@" + local + ":" + cfg.ServerName }
	err = st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		locals := []string{"bench", "bulk"}
		for i := range loginAccounts {
			locals = append(locals, loginAccount(i))
		}
		for _, local := range locals {
			if err := addUser(ctx, tx, user(local), hash); err != nil {
				return err
			}
		}
		devs, toks, err := addDevices(ctx, tx, user("bench"), "BENCH", 3)
		if err != nil {
			return err
		}
		s.Token, s.DeviceID = toks[0], devs[0].DeviceID
		s.UserID, s.Tokens = user("bench"), toks
		f := s.Bare[s.Token]
		f.Whoami = whoamiBody{UserID: user("bench"), DeviceID: devs[0].DeviceID}
		for _, d := range devs {
			f.Devices.Devices = append(f.Devices.Devices, device{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS})
		}
		s.Bare[s.Token] = f
		for _, n := range sizes {
			u := user(fmt.Sprintf("dev%d", n))
			if err := addUser(ctx, tx, u, hash); err != nil {
				return err
			}
			_, toks, err := addDevices(ctx, tx, u, "D", n)
			if err != nil {
				return err
			}
			s.BySize[n] = toks[0]
		}
		_, toks, err = addDevices(ctx, tx, user("bulk"), "CALLER", 1)
		s.BulkToken = toks[0]
		return err
	})
	return s, err
}

// seedBulk gives @bulk bulkDevices more devices (with tokens) named after
// round, and returns their IDs.
func seedBulk(ctx context.Context, st *storage.Store, cfg *config.Config, round int) ([]string, error) {
	var ids []string
	err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		devs, _, err := addDevices(ctx, tx, "@bulk:"+cfg.ServerName, fmt.Sprintf("R%d_", round), bulkDevices)
		for _, d := range devs {
			ids = append(ids, d.DeviceID)
		}
		return err
	})
	return ids, err
}

func addUser(ctx context.Context, tx bun.Tx, id, hash string) error {
	_, err := tx.NewInsert().Model(&storage.User{UserID: id, PasswordHash: hash, CreatedTS: time.Now().UnixMilli()}).Exec(ctx)
	return err
}

// addDevices inserts n devices named prefix+number, each with a token and
// a distinct last-seen time, in chunks.
func addDevices(ctx context.Context, tx bun.Tx, user, prefix string, n int) ([]storage.Device, []string, error) {
	now := time.Now().UnixMilli()
	ip := "127.0.0.1"
	devs := make([]storage.Device, n)
	ats := make([]storage.AccessToken, n)
	toks := make([]string, n)
	for i := range devs {
		name := fmt.Sprintf("Bench device %d", i)
		ts := now - int64(i)
		devs[i] = storage.Device{UserID: user, DeviceID: fmt.Sprintf("%s%05d", prefix, i), DisplayName: &name, LastSeenIP: &ip, LastSeenTS: &ts, CreatedTS: now}
		toks[i] = tokens.NewAccessToken()
		ats[i] = storage.AccessToken{TokenHash: tokens.HashToken(toks[i]).String(), UserID: user, DeviceID: devs[i].DeviceID, CreatedTS: now}
	}
	for start := 0; start < n; start += 500 {
		end := min(start+500, n)
		d, a := devs[start:end], ats[start:end]
		if _, err := tx.NewInsert().Model(&d).Exec(ctx); err != nil {
			return nil, nil, err
		}
		if _, err := tx.NewInsert().Model(&a).Exec(ctx); err != nil {
			return nil, nil, err
		}
	}
	return devs, toks, nil
}

// loginAccount is the localpart of the i-th login account.
func loginAccount(i int) string { return fmt.Sprintf("login%d", i) }
