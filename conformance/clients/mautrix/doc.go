// Package mautrix drives Myelin with mautrix-go (maunium.net/go/mautrix),
// a real Matrix client library, through its end-to-end encryption set-up:
// device keys, cross-signing keys, signatures, read back with
// /keys/query. Its crypto is the pure-Go goolm: the tests build only with
// -tags goolm (make test, make clients and .ci/run pass it); without the
// tag a stand-in test says so, and fails when real clients are required.
package mautrix
