package e2ekeys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// checkFallbackKeys validates uploaded fallback keys: like one-time keys,
// and at most one per algorithm.
func checkFallbackKeys(in map[string]json.RawMessage, userID, deviceID string) ([]storage.FallbackKey, error) {
	otks, err := checkOneTimeKeys(in, userID, deviceID)
	if err != nil {
		if e, ok := matrixerr.As(err); ok {
			return nil, matrixerr.New(e.Status, e.Code, "fallback_keys: "+e.Message)
		}
		return nil, err
	}
	rows := make([]storage.FallbackKey, 0, len(otks))
	seen := map[string]bool{}
	for _, k := range otks {
		if seen[k.Algorithm] {
			return nil, matrixerr.InvalidParam(fmt.Sprintf("fallback_keys: at most one key per algorithm (%s)", k.Algorithm))
		}
		seen[k.Algorithm] = true
		rows = append(rows, storage.FallbackKey{UserID: userID, DeviceID: deviceID, Algorithm: k.Algorithm, KeyID: k.KeyID, KeyJSON: k.KeyJSON})
	}
	return rows, nil
}

// storeFallbackKeys replaces the device's fallback key of each algorithm.
// A re-upload of the key on record keeps its used flag.
func storeFallbackKeys(ctx context.Context, tx bun.Tx, rows []storage.FallbackKey) error {
	for _, r := range rows {
		var old storage.FallbackKey
		err := tx.NewSelect().Model(&old).
			Where("user_id = ? AND device_id = ? AND algorithm = ?", r.UserID, r.DeviceID, r.Algorithm).Scan(ctx)
		if err == nil && old.KeyID == r.KeyID && old.KeyJSON == r.KeyJSON {
			continue
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.NewInsert().Model(&r).On("CONFLICT (user_id, device_id, algorithm) DO UPDATE").
			Set("key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, used = EXCLUDED.used").Exec(ctx); err != nil {
			return fmt.Errorf("store fallback key: %w", err)
		}
	}
	return nil
}

// claimFallback returns the device's fallback key of alg, marking it used;
// nil if it has none.
func claimFallback(ctx context.Context, tx bun.Tx, userID, deviceID, alg string) (*storage.OneTimeKey, error) {
	var fk storage.FallbackKey
	err := tx.NewSelect().Model(&fk).Where("user_id = ? AND device_id = ? AND algorithm = ?", userID, deviceID, alg).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fk.Used {
		if _, err := tx.NewUpdate().Model((*storage.FallbackKey)(nil)).Set("used = ?", true).
			Where("user_id = ? AND device_id = ? AND algorithm = ?", userID, deviceID, alg).Exec(ctx); err != nil {
			return nil, err
		}
	}
	return &storage.OneTimeKey{UserID: userID, DeviceID: deviceID, KeyID: fk.KeyID, Algorithm: alg, KeyJSON: fk.KeyJSON}, nil
}

func oneTimeKeyCounts(ctx context.Context, db bun.IDB, userID, deviceID string) (map[string]int, error) {
	var rows []keyCount
	if err := keyCountsQuery(db, userID, deviceID).Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	return countsOf(rows), nil
}

// keyCountsQuery counts a device's one-time keys per algorithm; the user
// and device are values, or a prepared read's placeholders.
func keyCountsQuery(db bun.IDB, userID, deviceID any) *bun.SelectQuery {
	return db.NewSelect().Model((*storage.OneTimeKey)(nil)).ColumnExpr("algorithm, COUNT(*) AS n").
		Where("user_id = ? AND device_id = ?", userID, deviceID).Group("algorithm")
}

type keyCount struct {
	Algorithm string `bun:"algorithm"`
	N         int    `bun:"n"`
}

func countsOf(rows []keyCount) map[string]int {
	counts := make(map[string]int, len(rows))
	for _, r := range rows {
		counts[r.Algorithm] = r.N
	}
	return counts
}

// OneTimeKeyCounts returns the device's unclaimed one-time keys per
// algorithm (/sync's device_one_time_keys_count; algorithms with none are
// absent).
func (s *Service) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	var rows []keyCount
	if err := s.Store.ScanRead(ctx, keyCounts, &rows, userID, deviceID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	return countsOf(rows), nil
}

// keyCounts and unusedFallbackKeys are OneTimeKeyCounts' and
// UnusedFallbackKeyTypes' reads (every /sync asks both), prepared.
var (
	keyCounts = storage.NewRead("one-time key counts", func(r *bun.DB, p *storage.Params) fmt.Stringer {
		return keyCountsQuery(r, p.Next(), p.Next())
	})
	unusedFallbackKeys = storage.NewRead("unused fallback keys", func(r *bun.DB, p *storage.Params) fmt.Stringer {
		return r.NewSelect().Model((*storage.FallbackKey)(nil)).Column("algorithm").
			Where("user_id = ? AND device_id = ? AND used = ?", p.Next(), p.Next(), false).Order("algorithm")
	})
)

// UnusedFallbackKeyTypes returns the algorithms of the device's fallback
// keys that no claim has handed out yet, sorted (/sync's
// device_unused_fallback_key_types; never nil).
func (s *Service) UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error) {
	var algs []string
	if err := s.Store.ScanRead(ctx, unusedFallbackKeys, &algs, userID, deviceID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if algs == nil {
		algs = []string{}
	}
	sort.Strings(algs)
	return algs, nil
}
