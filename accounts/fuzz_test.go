package accounts_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spotoken/spotoken/accounts"
)

// maxRetryAfter is the documented bound of Error.RetryAfter (2^31 s).
const maxRetryAfter = (1 << 31) * time.Second

// checkField holds Error.Code and Error.Description to their promise:
// printable UTF-8, at most 256 bytes.
func checkField(t *testing.T, name, s string) {
	t.Helper()
	if len(s) > 256 || !utf8.ValidString(s) {
		t.Fatalf("%s %q: %d bytes or invalid UTF-8", name, s, len(s))
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			t.Fatalf("%s %q: unprintable %U", name, s, r)
		}
	}
}

// wantMessage is what Error() must say: status, code, description, nothing else.
func wantMessage(e *accounts.Error) string {
	s := "accounts: " + strconv.Itoa(e.Status)
	if text := http.StatusText(e.Status); text != "" {
		s += " " + text
	}
	for _, f := range []string{e.Code, e.Description} {
		if f != "" {
			s += ": " + f
		}
	}
	return s
}

// FuzzTokenResponse feeds arbitrary token-endpoint answers to Refresh:
// x/oauth2's decoding and this package's classification, Retry-After
// parsing and sanitizing together. Nothing may panic, a failure status is
// always an *Error, and no error says more than it should.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, "application/json", "", []byte(`{"access_token":"AT","token_type":"Bearer","scope":"a b","expires_in":3600,"refresh_token":"RT2"}`))
	f.Add(200, "application/json", "", []byte(`{"access_token":"AT","expires_in":3600}`))
	f.Add(200, "application/json", "", []byte(`{"access_token":"AT","expires_in":"60","scope":""}`))
	f.Add(200, "application/json", "", []byte(`{"error":"invalid_grant"}`))
	f.Add(200, "application/x-www-form-urlencoded", "", []byte(`access_token=AT&expires_in=3600&refresh_token=RT2`))
	f.Add(200, "text/html", "", []byte(`<html>`))
	f.Add(400, "application/json", "", []byte(`{"error":"invalid_grant","error_description":"Refresh token revoked"}`))
	f.Add(400, "application/json", "", []byte(`{"error":"invalid_client","error_description":"Invalid client secret"}`))
	f.Add(429, "", "3", []byte(nil))
	f.Add(429, "application/json", "Wed, 01 Jul 2026 12:01:30 GMT", []byte(`{"error":{"status":429,"message":"API rate limit exceeded"}}`))
	f.Add(503, "text/plain; charset=utf-8", "", []byte("Service Unavailable\n"))
	f.Add(500, "application/json", "7", []byte(`{"error":"server_error\u0000","error_description":"\u001b[2J`+strings.Repeat("é", 200)+`"}`))
	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte) {
		if status < 0 {
			status = -status
		}
		status = 100 + status%900
		const presented = "RT-fuzz-presented"
		h := http.Header{}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		c := accounts.New(fakeConfig("", canned(status, h, body)))
		g, err := c.Refresh(context.Background(), presented)
		ok := status >= 200 && status <= 299
		if err == nil {
			if !ok {
				t.Fatalf("status %d: no error", status)
			}
			if g.AccessToken == "" || g.RefreshToken == "" {
				t.Fatalf("grant with an empty token: access %v, refresh %v", g.AccessToken == "", g.RefreshToken == "")
			}
			if g.Rotated != (g.RefreshToken != presented) {
				t.Fatalf("Rotated %v, but the refresh token changed: %v", g.Rotated, g.RefreshToken != presented)
			}
			if !g.Expiry.IsZero() && (!g.Expiry.After(t0) || g.Expiry.After(t0.Add((1<<31)*time.Second))) {
				t.Fatalf("Expiry %v out of range", g.Expiry)
			}
			return
		}
		var ae *accounts.Error
		switch {
		case errors.As(err, &ae):
			if ae.Status != status {
				t.Fatalf("Error.Status %d, want %d", ae.Status, status)
			}
			if ok && ae.Code == "" {
				t.Fatalf("status %d: *Error without a code", status)
			}
			if ae.RetryAfter < 0 || ae.RetryAfter > maxRetryAfter {
				t.Fatalf("RetryAfter %v out of range", ae.RetryAfter)
			}
			checkField(t, "Code", ae.Code)
			checkField(t, "Description", ae.Description)
			if got, want := err.Error(), wantMessage(ae); got != want {
				t.Fatalf("Error() = %q, want %q", got, want)
			}
		case !ok:
			t.Fatalf("status %d: error %v (%T), want *accounts.Error", status, err, err)
		case !errors.Is(err, accounts.ErrMalformedResponse):
			t.Fatalf("status %d: error %v, want ErrMalformedResponse", status, err)
		default:
			if strings.Contains(err.Error(), presented) || len(err.Error()) > 200 {
				t.Fatalf("error %q says too much", err)
			}
		}
		if accounts.IsTransient(err) != (ae != nil && ae.Transient()) {
			t.Fatalf("IsTransient(%v) = %v", err, accounts.IsTransient(err))
		}
	})
}

// FuzzRetryAfter holds the Retry-After parser (RFC 9110 §10.2.3) to its
// contract on a 429 with an empty body, as Spotify sends them.
func FuzzRetryAfter(f *testing.F) {
	for _, v := range []string{
		"", "0", "3", "3600", " 12 ", "-1", "+5", "1.5", "1e3", "soon", "99999999999999999999999", "2147483648", "2147483649",
		"Wed, 01 Jul 2026 12:01:30 GMT", "Wednesday, 01-Jul-26 12:01:30 GMT", "Wed Jul  1 12:01:30 2026",
		"Tue, 30 Jun 2026 12:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Wed, 01 Jul 2026 12:01:30 PST",
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c := accounts.New(fakeConfig("", canned(429, http.Header{"Retry-After": {v}}, nil)))
		_, err := c.Refresh(context.Background(), "RT1")
		var ae *accounts.Error
		if !errors.As(err, &ae) {
			t.Fatalf("error %v (%T), want *accounts.Error", err, err)
		}
		got := ae.RetryAfter
		if got < 0 || got > maxRetryAfter {
			t.Fatalf("Retry-After %q: %v out of range", v, got)
		}
		if ae.Status != 429 || ae.Code != "" || !accounts.IsTransient(err) {
			t.Fatalf("Retry-After %q: error %#v", v, ae)
		}
		s := strings.TrimSpace(v)
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && s[0] != '+' && n <= 1<<31 {
			if want := time.Duration(n) * time.Second; got != want {
				t.Fatalf("Retry-After %q: %v, want %v", v, got, want)
			}
			return
		}
		if when, err := http.ParseTime(s); err == nil {
			want := min(max(when.Sub(t0), 0), maxRetryAfter)
			if got != want {
				t.Fatalf("Retry-After %q: %v, want %v", v, got, want)
			}
			return
		}
		if s != "" && strings.Trim(s, "0123456789") == "" {
			if got != maxRetryAfter {
				t.Fatalf("Retry-After %q: %v, want the maximum", v, got)
			}
			return
		}
		if got != 0 {
			t.Fatalf("Retry-After %q (invalid): %v, want 0", v, got)
		}
	})
}
