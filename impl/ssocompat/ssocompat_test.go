package ssocompat

import (
	"strings"
	"testing"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

func TestCheckRedirectURLAcceptsWebAndNativeClientsAndRefusesTheRest(t *testing.T) {
	for _, ok := range []string{
		"https://app.element.io/#/login",
		"http://127.0.0.1:8080/callback?state=1",
		"http://[::1]:8080/cb",
		"element://connect",
		"io.element.android:/sso",
		"com.example.app:/cb?x=y",
	} {
		if _, err := CheckRedirectURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for raw, code := range map[string]string{
		"":                                  "M_MISSING_PARAM",
		"/relative/path":                    "M_INVALID_PARAM",
		"//evil.example.org/":               "M_INVALID_PARAM",
		"app.element.io":                    "M_INVALID_PARAM",
		"https:///no-host":                  "M_INVALID_PARAM",
		"https://user:pw@evil.example.org/": "M_INVALID_PARAM",
		"javascript:alert(1)":               "M_INVALID_PARAM",
		"JavaScript:alert(1)":               "M_INVALID_PARAM",
		"data:text/html,<script>":           "M_INVALID_PARAM",
		"file:///etc/passwd":                "M_INVALID_PARAM",
		"https://exa mple.org/":             "M_INVALID_PARAM",
		"myapp://x;script-src":              "M_INVALID_PARAM",
		"https://example.org/" + strings.Repeat("a", 2000): "M_INVALID_PARAM",
	} {
		_, err := CheckRedirectURL(raw)
		me, ok := matrixerr.As(err)
		if !ok || me.Status != 400 || me.Code != code {
			t.Errorf("%q: want 400 %s, got %v", raw, code, err)
		}
	}
}

func TestWithLoginTokenKeepsTheClientsQueryAndFragment(t *testing.T) {
	for raw, want := range map[string]string{
		"https://c.example.org/cb":           "https://c.example.org/cb?loginToken=T%2B1",
		"https://c.example.org/cb?a=1&b=%20": "https://c.example.org/cb?a=1&b=%20&loginToken=T%2B1",
		"https://c.example.org/?x=1#/login":  "https://c.example.org/?x=1&loginToken=T%2B1#/login",
		"element://connect":                  "element://connect?loginToken=T%2B1",
		"https://c.example.org/cb?":          "https://c.example.org/cb?loginToken=T%2B1",
	} {
		u, err := CheckRedirectURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := WithLoginToken(u, "T+1"); got != want {
			t.Errorf("%s: got %s, want %s", raw, got, want)
		}
	}
}

func TestStartLocationGoesToSignInOrRegistrationAndBackToTheConfirmation(t *testing.T) {
	for action, page := range map[string]string{"": "/_myelin/login?", "login": "/_myelin/login?", "register": "/_myelin/register?"} {
		to, err := StartLocation("https://c.example.org/cb?x=1", action)
		if err != nil {
			t.Fatal(err)
		}
		if want := page + "next=%2F_myelin%2Fsso%2Fconfirm%3FredirectUrl%3Dhttps%253A%252F%252Fc.example.org%252Fcb%253Fx%253D1"; to != want {
			t.Errorf("action %q: got %s, want %s", action, to, want)
		}
	}
	if _, err := StartLocation("https://c.example.org/cb", "delete"); err == nil {
		t.Error("an unknown action should be refused")
	}
	// A redirectUrl whose escaped form would not fit in "next" is refused
	// rather than silently dropped by the sign-in page.
	long := "https://c.example.org/?q=" + strings.Repeat("é", 340)
	if _, err := CheckRedirectURL(long); err != nil {
		t.Fatal(err)
	}
	if _, err := StartLocation(long, ""); err == nil {
		t.Error("a redirectUrl too long for next should be refused")
	}
}
