package devices_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

func openCore(t *testing.T, b testenv.Backend) (*devices.Core, *storage.Store) {
	t.Helper()
	st, err := storage.Open(context.Background(), testenv.NewDatabase(t, b), storage.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.DB.NewInsert().Model(&storage.User{UserID: "@alice:test", CreatedTS: 1}).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &devices.Core{Store: st}, st
}

func streamIDs(t *testing.T, st *storage.Store, user string) []int64 {
	t.Helper()
	var ids []int64
	if err := st.R.NewSelect().Model((*storage.DeviceListChange)(nil)).Column("stream_id").
		Where("user_id = ?", user).Order("stream_id").Scan(context.Background(), &ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestReusingADeviceRevokesExactlyItsPreviousToken(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		c, st := openCore(t, b)
		ctx := context.Background()
		var first, other, second devices.Login
		err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
			if first, err = c.IssueToken(ctx, tx, "@alice:test", "PHONE", nil, "10.0.0.1"); err != nil {
				return err
			}
			if other, err = c.IssueToken(ctx, tx, "@alice:test", "", nil, ""); err != nil {
				return err
			}
			second, err = c.IssueToken(ctx, tx, "@alice:test", "PHONE", nil, "10.0.0.2")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !first.Created || second.Created || second.DeviceID != "PHONE" || len(other.DeviceID) != 10 {
			t.Fatalf("unexpected: %+v %+v %+v", first, other, second)
		}
		if len(second.Revoked) != 1 {
			t.Fatalf("reuse revoked %d tokens, want 1", len(second.Revoked))
		}
		n, err := st.R.NewSelect().Model((*storage.AccessToken)(nil)).Where("user_id = ?", "@alice:test").Count(ctx)
		if err != nil || n != 2 {
			t.Fatalf("live tokens = %d (%v), want 2 (one per device)", n, err)
		}
		if got := streamIDs(t, st, "@alice:test"); fmt.Sprint(got) != "[1 2]" {
			t.Fatalf("stream ids %v, want [1 2] (two devices created, reuse is no change)", got)
		}
	})
}

func TestStreamIDsAreGapFreeUnderConcurrentChanges(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		c, st := openCore(t, b)
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
					_, err := c.IssueToken(ctx, tx, "@alice:test", fmt.Sprintf("DEV%02d", i), nil, "")
					return err
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		ids := streamIDs(t, st, "@alice:test")
		if len(ids) != 50 {
			t.Fatalf("%d stream rows, want 50", len(ids))
		}
		for i, id := range ids {
			if id != int64(i+1) {
				t.Fatalf("stream ids not gap-free: %v", ids)
			}
		}
	})
}

func TestDeletingDevicesRemovesTokensAndRecordsChanges(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		c, st := openCore(t, b)
		ctx := context.Background()
		var ids []string
		err := st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			for i := range 3000 {
				id := fmt.Sprintf("D%05d", i)
				ids = append(ids, id)
				if _, err := c.IssueToken(ctx, tx, "@alice:test", id, nil, ""); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var deleted, revoked []string
		err = st.Tx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
			deleted, revoked, err = c.DeleteDevices(ctx, tx, "@alice:test", append(ids[:2500:2500], "NOPE"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(deleted) != 2500 || len(revoked) != 2500 {
			t.Fatalf("deleted %d, revoked %d; want 2500 each", len(deleted), len(revoked))
		}
		n, _ := st.R.NewSelect().Model((*storage.AccessToken)(nil)).Count(ctx)
		d, _ := st.R.NewSelect().Model((*storage.Device)(nil)).Count(ctx)
		if n != 500 || d != 500 {
			t.Fatalf("left %d tokens and %d devices, want 500 each", n, d)
		}
		if got := streamIDs(t, st, "@alice:test"); len(got) != 5500 || got[5499] != 5500 {
			t.Fatalf("stream has %d rows", len(got))
		}
	})
}
