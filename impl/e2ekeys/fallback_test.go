package e2ekeys_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/testenv"
)

func claimID(t *testing.T, s *testenv.Server, user, device, alg string) (string, string) {
	t.Helper()
	got, err := s.App.Keys.ClaimLocal(context.Background(), map[string]map[string]string{user: {device: alg}})
	if err != nil {
		t.Fatal(err)
	}
	for id, k := range got[user][device] {
		return id, string(k)
	}
	return "", ""
}

func TestOneTimeKeysAreClaimedOldestUploadFirstThenTheFallbackKeyIsReused(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		alice := "@alice:" + s.Config.ServerName
		login(t, s, alice, "PHONE")
		up := func(body map[string]any) map[string]int {
			t.Helper()
			counts, err := s.App.Keys.Upload(ctx, alice, "PHONE", mustJSON(t, body))
			if err != nil {
				t.Fatal(err)
			}
			return counts
		}
		// Key IDs sort against the upload order.
		up(map[string]any{"one_time_keys": map[string]any{"signed_curve25519:ZZZ": map[string]any{"key": "first"}}})
		up(map[string]any{"one_time_keys": map[string]any{"signed_curve25519:MMM": map[string]any{"key": "second"}}})
		counts := up(map[string]any{
			"one_time_keys": map[string]any{"signed_curve25519:AAA": map[string]any{"key": "third"}},
			"fallback_keys": map[string]any{"signed_curve25519:FB1": map[string]any{"key": "fallback", "fallback": true}},
		})
		if fmt.Sprint(counts) != "map[signed_curve25519:3]" {
			t.Fatalf("counts %v (fallback keys are not one-time keys)", counts)
		}
		if types, _ := s.App.Keys.UnusedFallbackKeyTypes(ctx, alice, "PHONE"); !slices.Equal(types, []string{"signed_curve25519"}) {
			t.Fatalf("unused fallback types %v", types)
		}
		var order []string
		for range 3 {
			id, _ := claimID(t, s, alice, "PHONE", "signed_curve25519")
			order = append(order, id)
		}
		if fmt.Sprint(order) != "[signed_curve25519:ZZZ signed_curve25519:MMM signed_curve25519:AAA]" {
			t.Fatalf("claim order %v", order)
		}
		for range 2 {
			id, key := claimID(t, s, alice, "PHONE", "signed_curve25519")
			if id != "signed_curve25519:FB1" || key != `{"fallback":true,"key":"fallback"}` {
				t.Fatalf("claim with no one-time key left: %s %s", id, key)
			}
		}
		if types, _ := s.App.Keys.UnusedFallbackKeyTypes(ctx, alice, "PHONE"); len(types) != 0 {
			t.Fatalf("used fallback key still reported unused: %v", types)
		}
		if counts, _ := s.App.Keys.OneTimeKeyCounts(ctx, alice, "PHONE"); len(counts) != 0 {
			t.Fatalf("counts %v", counts)
		}
		// Re-uploading the used key keeps it used; a new one replaces it.
		up(map[string]any{"fallback_keys": map[string]any{"signed_curve25519:FB1": map[string]any{"key": "fallback", "fallback": true}}})
		if types, _ := s.App.Keys.UnusedFallbackKeyTypes(ctx, alice, "PHONE"); len(types) != 0 {
			t.Fatalf("re-upload reset the used flag: %v", types)
		}
		up(map[string]any{"fallback_keys": map[string]any{"signed_curve25519:FB2": map[string]any{"key": "new", "fallback": true}}})
		if types, _ := s.App.Keys.UnusedFallbackKeyTypes(ctx, alice, "PHONE"); len(types) != 1 {
			t.Fatalf("new fallback key not unused: %v", types)
		}
		if id, _ := claimID(t, s, alice, "PHONE", "signed_curve25519"); id != "signed_curve25519:FB2" {
			t.Fatalf("claimed %s, want the new fallback key", id)
		}
		// An algorithm without any key gives nothing.
		if id, _ := claimID(t, s, alice, "PHONE", "curve25519"); id != "" {
			t.Fatalf("claimed %s", id)
		}
		_, err := s.App.Keys.Upload(ctx, alice, "PHONE", mustJSON(t, map[string]any{"fallback_keys": map[string]any{
			"signed_curve25519:X1": map[string]any{"key": "a"}, "signed_curve25519:X2": map[string]any{"key": "b"}}}))
		wantMatrixError(t, err, "M_INVALID_PARAM")
		_, err = s.App.Keys.Upload(ctx, alice, "PHONE", mustJSON(t, map[string]any{"fallback_keys": map[string]any{"nocolon": "a"}}))
		wantMatrixError(t, err, "M_BAD_JSON")
	})
}

func TestFallbackKeysGoWithTheirDevice(t *testing.T) {
	testenv.ForEachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := testenv.Start(t, b, nil)
		ctx := context.Background()
		alice := "@alice:" + s.Config.ServerName
		login(t, s, alice, "PHONE")
		if _, err := s.App.Keys.Upload(ctx, alice, "PHONE", mustJSON(t, map[string]any{
			"fallback_keys": map[string]any{"signed_curve25519:FB": map[string]any{"key": "k"}}})); err != nil {
			t.Fatal(err)
		}
		err := s.App.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
			_, _, err := s.App.Devices.DeleteDevices(ctx, tx, alice, []string{"PHONE"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		login(t, s, alice, "PHONE")
		if id, _ := claimID(t, s, alice, "PHONE", "signed_curve25519"); id != "" {
			t.Fatalf("a deleted device's fallback key was handed out: %s", id)
		}
	})
}
