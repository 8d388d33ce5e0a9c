package specversions

import (
	"reflect"
	"strings"
	"testing"
)

var testOps = []Operation{
	{ID: "login", Method: "POST", Path: "/login", Changes: []Change{{"1.3", "added request.refresh_token"}}},
	{ID: "sync", Method: "GET", Path: "/sync", Changes: []Change{{"1.2", "rooms"}}},
	{ID: "upload", Method: "POST", Path: "/keys/device_signing/upload", AddedIn: "1.1"},
	{ID: "refresh", Method: "POST", Path: "/refresh", AddedIn: "1.3"},
}

func claim(st Status, features ...Feature) []string {
	return Claimable(Rows(testOps, features, st))
}

func TestEverythingServedClaimsEveryVersion(t *testing.T) {
	got := claim(Status{})
	if len(got) != len(R0)+19 || got[len(got)-1] != "v1.19" {
		t.Fatalf("got %v", got)
	}
}

func TestAPendingChangeKeepsItsVersionAndLaterOnesOff(t *testing.T) {
	got := claim(Status{Pending: map[string]string{"refresh": "issue 15"}})
	want := append(append([]string{}, R0...), "v1.1", "v1.2")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestAPendingPartOfAnOperationCountsForItsVersionOnly(t *testing.T) {
	got := claim(Status{Pending: map[string]string{"login@1.3": "refresh tokens"}})
	if strings.Join(got, ",") != strings.Join(append(append([]string{}, R0...), "v1.1", "v1.2"), ",") {
		t.Fatalf("got %v", got)
	}
}

func TestAPendingOperationThatPredatesV1KeepsOnlyTheR0LineOff(t *testing.T) {
	got := claim(Status{Pending: map[string]string{"sync": "issue 14"}, Unsupported: map[string]string{"sync@1.2": "no rooms"}})
	if len(got) != 19 || got[0] != "v1.1" {
		t.Fatalf("got %v", got)
	}
	got = claim(Status{Pending: map[string]string{"sync": "issue 14"}})
	if len(got) != 1 || got[0] != "v1.1" {
		t.Fatalf("the 1.2 change of a pending operation is pending too: got %v", got)
	}
}

func TestDeliberatelyUnsupportedRowsDoNotBlock(t *testing.T) {
	got := claim(Status{Unsupported: map[string]string{"upload": "reason"}})
	if got[len(got)-1] != "v1.19" {
		t.Fatalf("got %v", got)
	}
}

func TestFeaturesFromTheChangelogCount(t *testing.T) {
	f := Feature{Version: "1.13", Op: "login", What: "something the annotations miss"}
	got := claim(Status{Pending: map[string]string{"login@1.13": "not yet"}}, f)
	if got[len(got)-1] != "v1.12" {
		t.Fatalf("got %v", got)
	}
	if b := Blocking(Rows(testOps, []Feature{f}, Status{Pending: map[string]string{"login@1.13": "x"}}), "1.13"); len(b) != 1 {
		t.Fatalf("blocking rows %v", b)
	}
}

func TestVersionsOrderNumerically(t *testing.T) {
	if !Less("1.2", "1.10") || Less("1.10", "1.9") || !Less("", "1.1") || Less("1.1", "") {
		t.Fatal("order")
	}
}
