package spotoken_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
)

func TestNormalizeOrigin(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://SPA.Example", "https://spa.example"},
		{"https://spa.example/", "https://spa.example"},
		{"https://spa.example:443", "https://spa.example"},
		{"http://127.0.0.1:80", "http://127.0.0.1"},
		{"http://127.0.0.1:5173", "http://127.0.0.1:5173"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"HTTPS://spa.example:8443", "https://spa.example:8443"},
	} {
		got, err := spotoken.NormalizeOrigin(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeOrigin(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "*", "null", "spa.example", "ftp://spa.example", "https://spa.example/app", "https://spa.example?x",
		"https://spa.example#x", "https://u@spa.example", "https://spa.example:", "https://spa.example:x1", "https://", "//spa.example"} {
		if got, err := spotoken.NormalizeOrigin(bad); err == nil {
			t.Errorf("NormalizeOrigin(%q) = %q, want an error", bad, got)
		} else if spotoken.ErrorCode(err) != spotoken.EInvalid {
			t.Errorf("NormalizeOrigin(%q): code %s", bad, spotoken.ErrorCode(err))
		}
	}
}

// FuzzNormalizeOrigin: an accepted origin comes out in the form browsers
// send in Origin, scheme and host only, and normalizing it again changes
// nothing. Seeds in testdata/fuzz/FuzzNormalizeOrigin.
func FuzzNormalizeOrigin(f *testing.F) {
	for _, s := range []string{"https://spa.example", "HTTP://127.0.0.1:80/", "http://[::1]:5173", "https://spa.example:443", "https://x@y", "https://a.example/%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := spotoken.NormalizeOrigin(raw)
		if err != nil {
			return
		}
		again, err := spotoken.NormalizeOrigin(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeOrigin(%q) = %q, which normalizes to %q, %v", raw, got, again, err)
		}
		u, err := url.Parse(got)
		if err != nil || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
			t.Fatalf("NormalizeOrigin(%q) = %q is not scheme://host[:port]", raw, got)
		}
		if got != strings.ToLower(got) || strings.HasSuffix(got, ":443") && u.Scheme == "https" || strings.HasSuffix(got, ":80") && u.Scheme == "http" {
			t.Fatalf("NormalizeOrigin(%q) = %q: not lower case, or with the default port", raw, got)
		}
		b := &spotoken.BrowserApp{AppID: "a", Origins: []string{got}}
		if err := b.Validate(); err != nil {
			t.Fatalf("an origin NormalizeOrigin gave (%q) does not validate: %v", got, err)
		}
	})
}
