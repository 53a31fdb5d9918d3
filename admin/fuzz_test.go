package admin_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

// FuzzNormalizeOrigin: an accepted origin normalizes to itself, and is a
// bare scheme://host[:port] with a lower-case host; a refusal is an
// invalid_request error that names the setting.
func FuzzNormalizeOrigin(f *testing.F) {
	for _, s := range []string{"https://App.Example:443/", "http://[::1]:3000", "https://app.example/path", "https://u:p@x.example",
		"https://x.example:", "HTTP://X.EXAMPLE:80", "javascript:alert(1)", "https://x.example?#", "https://xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := admin.NormalizeOrigin(raw)
		if err != nil {
			if spotoken.ErrorCode(err) != spotoken.EInvalid || !strings.HasPrefix(spotoken.ErrorMessage(err), "return_to_origins") {
				t.Fatalf("NormalizeOrigin(%q): %v", raw, err)
			}
			return
		}
		again, err := admin.NormalizeOrigin(out)
		if err != nil || again != out {
			t.Fatalf("NormalizeOrigin(%q) = %q, which normalizes to %q, %v", raw, out, again, err)
		}
		u, err := url.Parse(out)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Host != strings.ToLower(u.Host) {
			t.Fatalf("NormalizeOrigin(%q) = %q: not a bare origin", raw, out)
		}
	})
}

// FuzzCheckApp: an app CheckApp accepts has absolute http(s) redirect URIs
// and webhook URL without user information, Spotify's scopes only, and is
// accepted again unchanged.
func FuzzCheckApp(f *testing.F) {
	f.Add("cid", "https://b.example/callback", "user-read-email", "https://App.example/", "https://a.example/hooks")
	f.Add("", "ftp://x", "root", "https://x.example/p", "https://u:p@x")
	f.Add("c i d", "http://127.0.0.1/callback#x", "", "", "")
	f.Fuzz(func(t *testing.T, clientID, redirect, scope, origin, webhook string) {
		app := &spotoken.App{ID: "a", ClientID: clientID, RedirectURIs: []string{redirect, redirect}, DefaultScopes: spotoken.Scopes{scope},
			ReturnToOrigins: []string{origin}, WebhookURL: webhook}
		if err := admin.CheckApp(app); err != nil {
			if spotoken.ErrorCode(err) != spotoken.EInvalid {
				t.Fatalf("CheckApp: %v", err)
			}
			return
		}
		for _, raw := range append(app.RedirectURIs, app.WebhookURL) {
			if raw == "" {
				continue
			}
			if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Host == "" {
				t.Fatalf("accepted URL %q", raw)
			}
		}
		if len(app.RedirectURIs) != 1 {
			t.Fatalf("duplicate redirect URIs kept: %q", app.RedirectURIs)
		}
		before := *app
		if err := admin.CheckApp(app); err != nil || app.ReturnToOrigins[0] != before.ReturnToOrigins[0] {
			t.Fatalf("a checked app checks differently again: %v", err)
		}
	})
}
