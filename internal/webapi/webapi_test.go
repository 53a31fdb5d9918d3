package webapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestTokenRejected(t *testing.T) {
	const challenge = `Bearer realm="spotify", error="invalid_token", error_description="The access token expired"`
	for _, tc := range []struct {
		name, body, header string
		want               bool
	}{
		{"expired", `{"error":{"status":401,"message":"The access token expired"}}`, "", true},
		{"invalid", `{"error":{"status":401,"message":"Invalid access token"}}`, "", true},
		{"permissions missing", `{"error":{"status":401,"message":"Permissions missing"}}`, "", false},
		{"permissions missing beats the header", `{"error":{"status":401,"message":"Permissions missing"}}`, challenge, false},
		{"no token provided", `{"error":{"status":401,"message":"No token provided"}}`, "", false},
		{"header alone", "", challenge, true},
		{"header, unquoted", "", `Bearer error=invalid_token`, true},
		{"other challenge", "", `Bearer realm="spotify", error="insufficient_scope"`, false},
		{"html body, header", "<html>401</html>", challenge, true},
		{"nothing", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 401, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.body))}
			if tc.header != "" {
				resp.Header.Set("WWW-Authenticate", tc.header)
			}
			if got := TokenRejected(resp); got != tc.want {
				t.Errorf("TokenRejected = %v, want %v", got, tc.want)
			}
			rest, _ := io.ReadAll(resp.Body)
			if string(rest) != tc.body {
				t.Errorf("body after TokenRejected = %q, want it untouched: %q", rest, tc.body)
			}
		})
	}
}
