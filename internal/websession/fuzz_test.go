package websession_test

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/spotoken/spotoken/internal/websession"
)

// FuzzAllowedOrigin feeds arbitrary Sec-Fetch-Site, Origin and Referer
// headers to AllowedOrigin for the origin https://tokens.example.com: it
// never panics, and whatever it allows came, by every header sent, from
// that origin, checked here by host and port rather than by the function's
// own normalisation.
func FuzzAllowedOrigin(f *testing.F) {
	for _, seed := range [][3]string{
		{"", "", ""},
		{"same-origin", "https://tokens.example.com", "https://tokens.example.com/x"},
		{"same-origin", "null", ""},
		{"cross-site", "https://evil.example", ""},
		{"", "https://TOKENS.example.com:443", ""},
		{"", "https://tokens.example.com:443@evil.example", ""},
		{"", "https://tokens.example.com.evil.example", ""},
		{"", "", "https://tokens.example.com@evil.example/"},
		{"same-site", "https://app.example.com", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	const self = "https://tokens.example.com"
	fromSelf := func(raw string) bool {
		u, err := url.Parse(raw)
		return err == nil && strings.EqualFold(u.Scheme, "https") && u.User == nil &&
			strings.EqualFold(u.Hostname(), "tokens.example.com") && (u.Port() == "" || u.Port() == "443")
	}
	f.Fuzz(func(t *testing.T, site, origin, referer string) {
		r := httptest.NewRequest("POST", self+"/x", nil)
		r.Header.Set("Sec-Fetch-Site", site)
		r.Header.Set("Origin", origin)
		r.Header.Set("Referer", referer)
		if !websession.AllowedOrigin(r, self) {
			return
		}
		site, origin, referer = r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin"), r.Header.Get("Referer")
		if site != "" && site != "same-origin" {
			t.Errorf("allowed with Sec-Fetch-Site %q", site)
		}
		if origin == "null" && site != "same-origin" {
			t.Error("allowed a null Origin that Sec-Fetch-Site did not vouch for")
		}
		if origin != "" && origin != "null" && !fromSelf(origin) {
			t.Errorf("allowed Origin %q", origin)
		}
		if referer != "" && !fromSelf(referer) {
			t.Errorf("allowed Referer %q", referer)
		}
	})
}
