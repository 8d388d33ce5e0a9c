//go:build !goolm

package mautrix_test

import (
	"os"
	"testing"
)

func TestMautrixBridgeBotSetsUpEncryption(t *testing.T) {
	const why = "mautrix-go's crypto needs -tags goolm (pure Go) to build"
	if os.Getenv("MYELIN_TEST_REQUIRE_CLIENTS") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}
