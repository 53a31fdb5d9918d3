package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseScopes: --scopes accepts only Spotify's scope names, returns
// them normalized, and names the valid ones when it refuses.
func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"", "user-read-email", "user-read-email,user-top-read", " user-read-email  user-read-email\t", "user-read-email bogus", "USER-READ-EMAIL", "playlist-read-private,,", "\x00", "user-read-email\nstreaming"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scopes, err := parseScopes(s)
		if err != nil {
			if !strings.Contains(err.Error(), "valid scopes are: "+strings.Join(spotifyScopes, " ")) {
				t.Errorf("parseScopes(%q) error does not list the valid scopes: %v", s, err)
			}
			return
		}
		if !slices.IsSorted(scopes) || len(slices.Compact(slices.Clone(scopes))) != len(scopes) {
			t.Errorf("parseScopes(%q) = %q: not normalized", s, scopes)
		}
		for _, sc := range scopes {
			if _, ok := slices.BinarySearch(spotifyScopes, string(sc)); !ok {
				t.Errorf("parseScopes(%q) accepted %q", s, sc)
			}
		}
	})
}

// FuzzLoginCallback sends arbitrary queries to login's redirect URI: only
// one with the right state and a code or an error reaches the login, and
// nothing panics.
func FuzzLoginCallback(f *testing.F) {
	const state = "st-123"
	for _, q := range []string{"state=st-123&code=abc", "state=st-123&error=access_denied", "state=st-12&code=abc", "code=abc", "state=st-123", "state=st-123&state=x&code=a", "%zz", "state=st-123&code=" + strings.Repeat("a", 300)} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		results := make(chan callback, 1)
		quit := make(chan struct{})
		close(quit) // the login has ended: an accepted answer is told so
		h := callbackHandler(state, results, quit)
		req := httptest.NewRequest("GET", "/callback", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		q := req.URL.Query()
		valid := q.Get("state") == state && (q.Get("code") != "" || q.Get("error") != "")
		select {
		case cb := <-results:
			if !valid || cb.code != q.Get("code") || cb.errCode != q.Get("error") {
				t.Errorf("query %q reached the login as %+v", query, cb)
			}
		default:
			if valid {
				t.Errorf("query %q with the right state did not reach the login (status %d)", query, rec.Code)
			}
			if rec.Code != http.StatusBadRequest {
				t.Errorf("query %q: status %d, want 400", query, rec.Code)
			}
		}
	})
}

// FuzzRedactDSN: the hint that repeats --db never shows a PostgreSQL
// password, in the user info or the query, in any encoding.
func FuzzRedactDSN(f *testing.F) {
	for _, s := range [][2]string{{"spotoken", "hunter2-hunter2"}, {"a@b", "p:a/s?s#w%rd"}, {"", "xxxxxxxxxxxx"}, {"u", "password=1234567"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, user, password string) {
		dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: "db.example:5432", Path: "/spotoken",
			RawQuery: url.Values{"sslmode": {"disable"}, "password": {password}}.Encode()}).String()
		got := redactDSN(dsn)
		if len(password) < 8 || strings.Contains("postgres://db.example:5432/spotoken?sslmode=disable&password=xxxxx", password) {
			return // too short to tell from the rest
		}
		for _, form := range []string{password, url.QueryEscape(password), url.PathEscape(password), url.UserPassword("", password).String()[1:]} {
			if len(form) >= 8 && strings.Contains(got, form) && !strings.Contains(user+url.QueryEscape(user)+url.PathEscape(user), form) {
				t.Fatalf("redactDSN(%q) = %q shows the password", dsn, got)
			}
		}
	})
}

// FuzzDoctorPageText: whatever page /authorize answers, the doctor prints
// at most a short line of it, printable, with no markup of the page's own.
func FuzzDoctorPageText(f *testing.F) {
	for _, s := range []string{
		`<!doctype html><html><head><title>Error</title></head><body><h1>Oops! Something went wrong</h1><p id="error">INVALID_CLIENT: Invalid redirect URI</p></body></html>`,
		"<script>alert(1)</script>plain", "\x1b[31mred\x00", "<a href='x'>" + strings.Repeat("é", 300), "<", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, page []byte) {
		got := pageText(page)
		if len(got) > 200+len("…") {
			t.Fatalf("pageText is %d bytes", len(got))
		}
		for _, r := range got {
			if r != '?' && (r < 0x20 || r == 0x7f) {
				t.Fatalf("pageText(%q) = %q holds a control character", page, got)
			}
		}
		if !utf8.ValidString(got) {
			t.Fatalf("pageText(%q) = %q is not UTF-8", page, got)
		}
		if strings.ContainsAny(got, "\n\r\t") {
			t.Fatalf("pageText(%q) = %q is not one line", page, got)
		}
	})
}
