package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// cliDB makes a SQLite database with @alice:localhost and her devices
// (DEV0000…), and @bob:localhost with device BOBDEV.
func cliDB(t *testing.T, n int) (path string, st *storage.Store) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "myelin.db")
	st, err := storage.Open(context.Background(), path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	users := []storage.User{{UserID: "@alice:localhost", CreatedTS: 1}, {UserID: "@bob:localhost", CreatedTS: 1}}
	if _, err := st.DB.NewInsert().Model(&users).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("DEV%04d", i)
	}
	testenv.InsertDevices(t, st, "@alice:localhost", ids)
	testenv.InsertDevices(t, st, "@bob:localhost", []string{"BOBDEV"})
	return path, st
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func deviceIDs(t *testing.T, st *storage.Store, user string) []string {
	t.Helper()
	var ids []string
	if err := st.R.NewSelect().Model((*storage.Device)(nil)).Column("device_id").Where("user_id = ?", user).
		Order("device_id").Scan(context.Background(), &ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestDeviceListAndRenameCommands(t *testing.T) {
	db, st := cliDB(t, 2)
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	if _, err := st.DB.NewUpdate().Model((*storage.Device)(nil)).Set("last_seen_ts = ?, last_seen_ip = '192.0.2.9'", seen).
		Where("device_id = 'DEV0001'").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "device", "--database", db, "rename", "alice", "DEV0001", "Work laptop")
	if code != 0 || !strings.Contains(out, "renamed DEV0001") {
		t.Fatalf("rename: %d %q %q", code, out, errs)
	}
	t.Setenv("MYELIN_DATABASE", db)
	code, out, errs = runCLI(t, "device", "list", "@Alice:localhost") // user IDs of this server are case-insensitive, as at login
	if code != 0 {
		t.Fatalf("list: %d %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "DEV0001") || !strings.Contains(lines[1], "Work laptop") ||
		!strings.Contains(lines[1], "192.0.2.9") || !strings.Contains(lines[1], "2026-01-02T03:04:05Z") ||
		!strings.Contains(lines[2], "never") || strings.Contains(out, "BOBDEV") {
		t.Fatalf("list output:\n%s", out)
	}

	for _, args := range [][]string{
		{"device", "rename", "alice", "NOSUCH", "x"},
		{"device", "rename", "alice", "DEV0000", strings.Repeat("n", 101)},
		{"device", "list", "nobody"},
		{"device", "list"},
	} {
		if code, _, errs := runCLI(t, args...); code == 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want a failure with a message", args, code, errs)
		}
	}
}

func TestDeviceDeleteCommandForms(t *testing.T) {
	db, st := cliDB(t, 1200)
	t.Setenv("MYELIN_DATABASE", db)
	old := time.Now().Add(-100 * 24 * time.Hour).UnixMilli()
	recent := time.Now().Add(-time.Hour).UnixMilli()
	if _, err := st.DB.NewUpdate().Model((*storage.Device)(nil)).Set("last_seen_ts = ?", recent).
		Where("device_id IN ('DEV0000', 'DEV0001')").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.NewUpdate().Model((*storage.Device)(nil)).Set("created_ts = ?", recent).
		Where("device_id = 'DEV0002'").Exec(context.Background()); err != nil { // new, never seen
		t.Fatal(err)
	}
	if _, err := st.DB.NewUpdate().Model((*storage.Device)(nil)).Set("last_seen_ts = ?", old).
		Where("device_id = 'DEV0003'").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "device", "delete", "alice", "DEV0000", "NOSUCH")
	if code != 0 || strings.TrimSpace(out) != "deleted 1 devices of @alice:localhost" {
		t.Fatalf("delete by ID: %d %q %q", code, out, errs)
	}
	// Created 1 ms after the epoch and never seen, or seen 100 days ago.
	code, out, errs = runCLI(t, "device", "delete", "alice", "--inactive-for", "90d")
	if code != 0 || strings.TrimSpace(out) != "deleted 1197 devices of @alice:localhost" {
		t.Fatalf("delete --inactive-for: %d %q %q", code, out, errs)
	}
	if got := fmt.Sprint(deviceIDs(t, st, "@alice:localhost")); got != "[DEV0001 DEV0002]" {
		t.Fatalf("left after --inactive-for: %s", got)
	}
	code, out, errs = runCLI(t, "device", "delete", "alice", "--all")
	if code != 0 || strings.TrimSpace(out) != "deleted 2 devices of @alice:localhost" {
		t.Fatalf("delete --all: %d %q %q", code, out, errs)
	}
	if len(deviceIDs(t, st, "@alice:localhost")) != 0 || len(deviceIDs(t, st, "@bob:localhost")) != 1 {
		t.Fatal("--all deleted the wrong devices")
	}
	deleted, err := st.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Where("user_id = ? AND deleted", "@alice:localhost").Count(context.Background())
	if err != nil || deleted != 1200 {
		t.Fatalf("%d deletion stream rows (%v), want 1200", deleted, err)
	}

	for _, args := range [][]string{
		{"device", "delete", "alice"},
		{"device", "delete", "alice", "--all", "DEV0001"},
		{"device", "delete", "alice", "--inactive-for"},
		{"device", "delete", "alice", "--inactive-for", "soon"},
		{"device", "delete", "alice", "--bogus"},
	} {
		if code, _, errs := runCLI(t, args...); code == 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want a failure with a message", args, code, errs)
		}
	}
}
