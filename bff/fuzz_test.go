package bff

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/websession"
)

var fuzzApp = &spotoken.BrowserApp{AppID: "demo", Origins: []string{"https://spa.example", "http://127.0.0.1:5173"}}

// FuzzReturnTo: whatever return_to holds, the sign-in sends the browser
// back only to one of the app's origins, with no user information, as an
// absolute http(s) URL. Seeds in testdata/fuzz/FuzzReturnTo.
func FuzzReturnTo(f *testing.F) {
	for _, s := range []string{"", "https://spa.example/", "https://spa.example/app?x=1#/home", "http://127.0.0.1:5173",
		"https://spa.example@evil.example/", "//evil.example", "https://SPA.example:443/x", "javascript:alert(1)",
		"https://spa.example\\@evil.example", "https://evil.example/https://spa.example/", "http://127.0.0.1:5173.evil.example/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseReturnTo(fuzzApp, raw)
		if err != nil {
			if spotoken.ErrorCode(err) != spotoken.EInvalid {
				t.Fatalf("parseReturnTo(%q): error code %s, want invalid_request", raw, spotoken.ErrorCode(err))
			}
			return
		}
		u, perr := url.Parse(got)
		if perr != nil {
			t.Fatalf("parseReturnTo(%q) = %q, which does not parse: %v", raw, got, perr)
		}
		if u.User != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("parseReturnTo(%q) = %q: user, no host or another scheme", raw, got)
		}
		if !fuzzApp.AllowsOrigin(websession.Origin(u)) {
			t.Fatalf("parseReturnTo(%q) = %q, whose origin %s is not the app's", raw, got, websession.Origin(u))
		}
		if strings.ContainsAny(got, "\\\r\n\x00") {
			t.Fatalf("parseReturnTo(%q) = %q holds a backslash or a control character", raw, got)
		}
	})
}

// FuzzPreflight: a preflight is allowed only for one of the app's origins,
// one of the route's methods, and headers among those spotoken takes; the
// answer names only those. Seeds in testdata/fuzz/FuzzPreflight.
func FuzzPreflight(f *testing.F) {
	f.Add("api", "https://spa.example", "GET", "x-spotoken-csrf")
	f.Add("api", "https://spa.example", "PUT", "Content-Type, X-Spotoken-CSRF")
	f.Add("logout", "http://127.0.0.1:5173", "POST", "")
	f.Add("session", "https://spa.example", "POST", "x-spotoken-csrf")
	f.Add("api", "null", "GET", "x-spotoken-csrf")
	f.Add("api", "https://spa.example", "GET", "x-spotoken-csrf,,authorization")
	f.Fuzz(func(t *testing.T, route, origin, method, headers string) {
		methods, allowHeaders, ok := preflight(fuzzApp, route, origin, method, headers)
		if !ok {
			if methods != "" || allowHeaders != "" {
				t.Fatalf("a refused preflight answers methods %q, headers %q", methods, allowHeaders)
			}
			return
		}
		if !fuzzApp.AllowsOrigin(origin) {
			t.Fatalf("preflight allowed origin %q", origin)
		}
		if !slices.Contains(routeMethods(route), method) {
			t.Fatalf("preflight allowed method %q on route %q", method, route)
		}
		for _, h := range strings.Split(allowHeaders, ", ") {
			if !slices.Contains(allowedHeaders, h) {
				t.Fatalf("preflight allowed header %q", h)
			}
		}
		for _, h := range strings.Split(headers, ",") {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" && !slices.Contains(allowedHeaders, h) {
				t.Fatalf("preflight with header %q allowed", h)
			}
		}
	})
}
