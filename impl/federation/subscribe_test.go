package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// A server that asks for a user's devices while a change of that user is
// being committed must either get the change in its answer or be sent it:
// the change read the (not yet) subscribers before the subscription
// committed, so the answer has to wait for the change.
func TestSubscribingDuringADeviceChangeGetsTheChangeOneWayOrTheOther(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		st := openStore(t, b)
		o := newOrigin(t, st, newRecorder(t))
		cfg := config.Defaults()
		cfg.ServerName = "a.test"
		svc := &federation.Service{Config: &cfg, Store: st}
		const user = "@alice:a.test"
		if _, err := st.DB.NewInsert().Model(&storage.User{UserID: user, CreatedTS: 1}).Exec(ctx); err != nil {
			t.Fatal(err)
		}

		changed, release, committed := make(chan devices.Login, 1), make(chan struct{}), make(chan error, 1)
		go func() {
			committed <- st.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
				l, err := o.core.IssueToken(ctx, tx, user, "", nil, "")
				if err != nil {
					return err
				}
				changed <- l // the change has read its subscribers: none
				<-release
				return nil
			})
		}()
		select {
		case <-changed:
		case err := <-committed:
			t.Fatalf("change failed: %v", err)
		}

		answered := make(chan federation.UserDevices, 1)
		failed := make(chan error, 1)
		go func() {
			ud, err := svc.UserDevices(ctx, "c.test", user)
			if err != nil {
				failed <- err
				return
			}
			answered <- ud
		}()
		early := false
		select {
		case <-answered:
			early = true
		case err := <-failed:
			t.Fatal(err)
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		if err := <-committed; err != nil {
			t.Fatal(err)
		}
		if early {
			t.Fatal("the device list was answered while a change of it was uncommitted: the change never reaches the new subscriber")
		}
		var ud federation.UserDevices
		select {
		case ud = <-answered:
		case err := <-failed:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("no answer after the change committed")
		}
		if ud.StreamID != 1 {
			t.Fatalf("answer at stream_id %d, want 1 (the change)", ud.StreamID)
		}
	})
}
