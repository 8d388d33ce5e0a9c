package csapi

import (
	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/specversions"
)

// Coverage says how this server answers each operation of the vendored
// client-server spec, and each change a spec version made to one (keys
// "opID@1.x"); anything not named is served. The conformance suite checks
// it against the code: every operation stubbed in pending_*.go is pending
// here and nothing else is, and every deliberately unsupported operation
// answers the Matrix error its reason describes.
var Coverage = specversions.Status{
	Unsupported: map[string]string{
		"requestTokenToRegisterEmail":            "400 M_UNKNOWN: no email is sent (3PID verification is not configured)",
		"requestTokenToRegisterMSISDN":           "400 M_UNKNOWN: no SMS is sent (3PID verification is not configured)",
		"requestTokenToResetPasswordEmail":       "400 M_UNKNOWN: no email is sent (3PID verification is not configured)",
		"requestTokenToResetPasswordMSISDN":      "400 M_UNKNOWN: no SMS is sent (3PID verification is not configured)",
		"requestTokenTo3PIDEmail":                "400 M_UNKNOWN: no email is sent (3PID verification is not configured)",
		"requestTokenTo3PIDMSISDN":               "400 M_UNKNOWN: no SMS is sent (3PID verification is not configured)",
		"post3PIDs":                              "400 M_THREEPID_AUTH_FAILED: no 3PID session is ever validated; an admin binds 3PIDs",
		"add3PID":                                "400 M_THREEPID_AUTH_FAILED: no 3PID session is ever validated; an admin binds 3PIDs",
		"bind3PID":                               "400 M_THREEPID_AUTH_FAILED: Myelin talks to no identity server",
		"getAccountDataPerRoom":                  "404 M_NOT_FOUND: Myelin holds no rooms",
		"setAccountDataPerRoom":                  "403 M_FORBIDDEN: Myelin holds no rooms",
		"sync@1.2":                               "room sections: Myelin holds no rooms (rooms is always empty)",
		"sync@1.4":                               "room sections: Myelin holds no rooms (rooms is always empty)",
		"sync@1.11":                              "room sections: Myelin holds no rooms (rooms is always empty)",
		"sync@1.16":                              "room sections: Myelin holds no rooms (rooms is always empty)",
		"sync@1.19":                              "room sections: Myelin holds no rooms (rooms is always empty)",
		"requestTokenToRegisterEmail@1.18":       "no email is sent, so there is no submit_url",
		"requestTokenToRegisterMSISDN@1.18":      "no SMS is sent, so there is no submit_url",
		"requestTokenToResetPasswordEmail@1.18":  "no email is sent, so there is no submit_url",
		"requestTokenToResetPasswordMSISDN@1.18": "no SMS is sent, so there is no submit_url",
		"requestTokenTo3PIDEmail@1.18":           "no email is sent, so there is no submit_url",
		"requestTokenTo3PIDMSISDN@1.18":          "no SMS is sent, so there is no submit_url",
	},
	Pending: map[string]string{},
}

// Features are changes of spec versions that the spec's annotations do
// not carry (from its changelog), tied to the operation they change.
var Features = []specversions.Feature{
	{Version: "1.2", Op: "login", What: "m.login.application_service login (MSC2778)"},
	{Version: "1.9", Op: "claimKeys", What: "fallback keys are marked `fallback: true`"},
	{Version: "1.13", Op: "claimKeys", What: "one-time keys are claimed oldest upload first (MSC4225)"},
	{Version: "1.15", Op: "getAuthMetadata", What: "the OAuth 2.0 API (MSC3861)"},
	{Version: "1.18", Op: "getLoginFlows", What: "m.login.sso with oauth_aware_preferred, for OAuth 2.0 aware clients (MSC3824)"},
}

// CoverageRows is the coverage table of the client-server API.
func CoverageRows() []specversions.Row {
	return specversions.Rows(specversions.FromClientAPI(clientapi.SpecOperations), Features, Coverage)
}

// Versions lists the spec versions served, derived from the coverage
// table (see specversions.Claimable).
var Versions = specversions.Claimable(CoverageRows())
