package server_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/spotoken/spotoken/server"
)

func TestClientIP(t *testing.T) {
	trusted, err := server.ParseTrustedProxies([]string{"10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies: the peer", "203.0.113.5:4000", []string{"192.0.2.1"}, nil, "203.0.113.5"},
		{"untrusted peer: XFF ignored", "203.0.113.5:4000", []string{"192.0.2.1"}, trusted, "203.0.113.5"},
		{"trusted peer, one hop", "127.0.0.1:4000", []string{"192.0.2.1"}, trusted, "192.0.2.1"},
		{"right-most untrusted wins", "10.1.1.1:80", []string{"198.51.100.9, 192.0.2.1, 10.2.2.2"}, trusted, "192.0.2.1"},
		{"a forged left entry is not believed", "127.0.0.1:80", []string{"198.51.100.66", "192.0.2.1"}, trusted, "192.0.2.1"},
		{"several headers read right to left", "127.0.0.1:80", []string{"192.0.2.7", "10.0.0.1"}, trusted, "192.0.2.7"},
		{"all trusted: the left-most", "127.0.0.1:80", []string{"10.0.0.3, 10.0.0.2"}, trusted, "10.0.0.3"},
		{"garbage stops the walk", "127.0.0.1:80", []string{"192.0.2.1, nonsense, 10.0.0.2"}, trusted, "10.0.0.2"},
		{"ports and brackets", "127.0.0.1:80", []string{"[2001:db8::1]:443"}, trusted, "2001:db8::1"},
		{"bracketed v6", "127.0.0.1:80", []string{"[2001:db8::2]"}, trusted, "2001:db8::2"},
		{"v4-mapped peer", "[::ffff:127.0.0.1]:80", []string{"192.0.2.3"}, trusted, "192.0.2.3"},
		{"trusted v6 proxy", "[2001:db8:ffff::1]:80", []string{"2001:db8:1::9"}, trusted, "2001:db8:1::9"},
		{"no header", "127.0.0.1:80", nil, trusted, "127.0.0.1"},
		{"empty header", "127.0.0.1:80", []string{""}, trusted, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := server.ClientIP(r, tt.trusted); got.String() != tt.want {
				t.Errorf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := server.ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParseTrustedProxies took 10.0.0.0/33")
	}
	if _, err := server.ParseTrustedProxies([]string{"proxy.example"}); err == nil {
		t.Error("ParseTrustedProxies took a host name")
	}
}

// FuzzClientIP: whatever X-Forwarded-For says, the answer is the peer, or
// an address the header names; never a panic.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "198.51.100.9, 192.0.2.1, 10.2.2.2", "[2001:db8::1]:443", "a,,b", ",", " , 10.0.0.1 ,"} {
		f.Add(s)
	}
	trusted, _ := server.ParseTrustedProxies([]string{"10.0.0.0/8", "127.0.0.1"})
	f.Fuzz(func(t *testing.T, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:1"
		r.Header.Set("X-Forwarded-For", xff)
		got := server.ClientIP(r, trusted)
		if !got.IsValid() {
			t.Fatalf("ClientIP(%q) is not an address", xff)
		}
	})
}
