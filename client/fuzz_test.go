package client

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeTokenAnswer feeds arbitrary broker answers (status, Retry-After,
// body) to the token decoder: it never panics, accepts only a complete
// Bearer token on 200, and its errors never repeat an access token or a
// connect link from the body (unless the broker's own code or description
// does, which is the broker's text).
func FuzzDecodeTokenAnswer(f *testing.F) {
	f.Add(200, "", []byte(`{"access_token":"BQ-secret-token","token_type":"Bearer","expires_at":"2026-12-01T12:00:00Z","scope":"user-read-email"}`))
	f.Add(200, "", []byte(`{"access_token":"BQ-secret-token","token_type":"mac","expires_at":"2026-12-01T12:00:00Z"}`))
	f.Add(200, "", []byte(`{"access_token":"BQ-secret-token","token_type":"Bearer"}`))
	f.Add(200, "", []byte(`<html>not json</html>`))
	f.Add(409, "", []byte(`{"error":"needs_reauth","error_description":"the user must authorize again","connect_url":"https://b.example/connect/cs_secretlink","connect_url_expires_at":"2026-12-01T12:15:00Z"}`))
	f.Add(403, "", []byte(`{"error":"insufficient_scope","required_scopes":["user-top-read"],"connect_url":"https://b.example/connect/cs_x"}`))
	f.Add(429, "7", []byte(`{"error":"rate_limited","retry_after":3}`))
	f.Add(502, "", []byte(`<html>bad gateway; your key sk_abc</html>`))
	f.Add(401, "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`{"error":"invalid_token","access_token":"BQ-secret-token"}`))
	f.Fuzz(func(t *testing.T, status int, retry string, body []byte) {
		if status < 100 || status > 999 {
			t.Skip()
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set("Retry-After", retry)
		tok, err := decodeTokenAnswer("u1", resp, body)
		if err == nil {
			if status != http.StatusOK || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
				t.Fatalf("accepted %d %q as token %+v", status, body, tok)
			}
			return
		}
		var fields map[string]any
		json.Unmarshal(body, &fields)
		msg := err.Error()
		own := ""
		if e, ok := err.(*Error); ok {
			own = e.Code + " " + e.Description
			if e.RetryAfter < 0 {
				t.Errorf("negative RetryAfter %v", e.RetryAfter)
			}
		}
		for _, k := range []string{"access_token", "refresh_token", "connect_url"} {
			v, _ := fields[k].(string)
			if len(v) >= 8 && strings.Contains(msg, v) && !strings.Contains(own, v) {
				t.Errorf("error %q repeats the answer's %s", msg, k)
			}
		}
	})
}

// FuzzRetryAfter: any Retry-After header gives a wait between zero and a
// day, or none.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "5", "-1", "86400", "86401", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "Tue, 01 Dec 2026 12:00:30 GMT", "soon"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		resp := &http.Response{Header: http.Header{}}
		resp.Header.Set("Retry-After", v)
		d, ok := retryAfter(resp, now)
		if !ok && d != 0 {
			t.Errorf("retryAfter(%q) = %v, false", v, d)
		}
		if d < 0 {
			t.Errorf("retryAfter(%q) = %v: negative", v, d)
		}
	})
}
