package storage_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// usersCreatedBetween reads with two parameters, so their placeholders
// must be numbered ($1, $2) on PostgreSQL.
var usersCreatedBetween = storage.NewRead("users created between", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.User)(nil)).Column("user_id", "created_ts").
		Where("created_ts >= ?", p.Next()).Where("created_ts < ?", p.Next()).Order("user_id")
})

var userByID = storage.NewRead("user by id", func(r *bun.DB, p *storage.Params) fmt.Stringer {
	return r.NewSelect().Model((*storage.User)(nil)).Column("user_id").Where("user_id = ?", p.Next())
})

func TestPreparedReadsPassValuesAsParametersOnEveryConnection(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		st, err := storage.Open(ctx, testenv.NewDatabase(t, b), storage.Options{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		// A value that would break out of a quoted literal, were it written
		// into the SQL text.
		odd := `@o'; DROP TABLE users; --:x`
		for i, u := range []string{"@a:x", "@b:x", "@c:x", odd} {
			if _, err := st.DB.NewInsert().Model(&storage.User{UserID: u, CreatedTS: int64(10 * (i + 1))}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var users []storage.User
		if err := st.ScanRead(ctx, usersCreatedBetween, &users, 20, 40); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range users {
			got = append(got, fmt.Sprintf("%s@%d", u.UserID, u.CreatedTS))
		}
		if want := []string{"@b:x@20", "@c:x@30"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		// Concurrent readers: the pool's connections each prepare it.
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Go(func() {
				want := []string{"@a:x", "@b:x", "@c:x", odd}[i%4]
				var us []storage.User
				if err := st.ScanRead(ctx, userByID, &us, want); err != nil {
					errs <- err
					return
				}
				if len(us) != 1 || us[0].UserID != want {
					errs <- fmt.Errorf("%s: got %+v", want, us)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var none []storage.User
		if err := st.ScanRead(ctx, userByID, &none, "@nobody:x"); err != nil || len(none) != 0 {
			t.Fatalf("no rows: %v %v", none, err)
		}
	})
}
