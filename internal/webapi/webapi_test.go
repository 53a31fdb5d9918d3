package webapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The 401 messages Spotify has sent, by era (SPOTIFY.md, "Web API errors").
var (
	message2026   = "Missing/invalid/expired access token"
	legacyInvalid = "Invalid access token"
	legacyExpired = "The access token expired"
	legacyNoToken = "No token provided"
)

func spotifyError(status, message string) string {
	return `{
  "error" : {
    "status" : ` + status + `,
    "message" : "` + message + `"
  }
}`
}

func TestClassify(t *testing.T) {
	const challenge = `Bearer realm="spotify", error="invalid_token", error_description="The access token expired"`
	for _, tc := range []struct {
		name, body, header string
		status             int
		want               Verdict
	}{
		{"2026: expired, unknown or empty", spotifyError("401", message2026), "", 401, RejectedToken},
		{"legacy: expired", spotifyError("401", legacyExpired), challenge, 401, RejectedToken},
		{"legacy: invalid", spotifyError("401", legacyInvalid), "", 401, RejectedToken},
		{"legacy: no token provided", spotifyError("401", legacyNoToken), `Bearer realm="spotify"`, 401, RejectedToken},
		{"a wording nobody has seen yet", spotifyError("401", "Token no good"), "", 401, RejectedToken},
		{"client-credentials token on a user endpoint", spotifyError("401", "Unauthorized."), "", 401, RejectedToken},
		{"401, empty body", "", "", 401, RejectedToken},
		{"401, header alone", "", challenge, 401, RejectedToken},
		{"401, html body", "<html>401</html>", "", 401, RejectedToken},
		{"permissions missing", spotifyError("401", "Permissions missing"), "", 401, PermissionsMissing},
		{"permissions missing, whatever the header", spotifyError("401", "Permissions missing"), challenge, 401, PermissionsMissing},
		{"permissions missing, other case", spotifyError("401", "permissions Missing"), "", 401, PermissionsMissing},
		{"permissions missing as plain text is no error object", "Permissions missing", "", 401, RejectedToken},
		{"403 insufficient client scope", spotifyError("403", "Insufficient client scope"), "", 403, Pass},
		{"403 plain text", "User not registered in the Developer Dashboard", "", 403, Pass},
		{"400 malformed bearer", spotifyError("400", "Only valid bearer authentication supported"), "", 400, Pass},
		{"200", `{"id":"alice"}`, "", 200, Pass},
		{"429", spotifyError("429", "API rate limit exceeded"), "", 429, Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.body))}
			if tc.header != "" {
				resp.Header.Set("WWW-Authenticate", tc.header)
			}
			if got := Classify(resp); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
			rest, _ := io.ReadAll(resp.Body)
			if string(rest) != tc.body {
				t.Errorf("body after Classify = %q, want it untouched: %q", rest, tc.body)
			}
		})
	}
}

// A 401 with a body longer than MaxRejectionBody is read no further, and
// the body still reads whole.
func TestClassifyLongBody(t *testing.T) {
	body := strings.Repeat(" ", MaxRejectionBody) + spotifyError("401", "Permissions missing")
	resp := &http.Response{StatusCode: 401, Body: io.NopCloser(strings.NewReader(body))}
	if got := Classify(resp); got != RejectedToken {
		t.Errorf("Classify = %v, want %v: the object is cut off at the limit", got, RejectedToken)
	}
	if rest, _ := io.ReadAll(resp.Body); string(rest) != body {
		t.Errorf("the body lost %d bytes", len(body)-len(rest))
	}
}

func TestClassifyNoBody(t *testing.T) {
	for _, body := range []io.ReadCloser{nil, http.NoBody} {
		if got := Classify(&http.Response{StatusCode: 401, Body: body}); got != RejectedToken {
			t.Errorf("Classify(body %v) = %v, want %v", body, got, RejectedToken)
		}
	}
}

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		ok         bool
	}{
		{spotifyError("403", "Forbidden"), "Forbidden", true},
		{`{"error":{"status":429,"message":""}}`, "", true},
		{"User not registered in the Developer Dashboard", "", false},
		{`{"error":"invalid_grant","error_description":"x"}`, "", false},
		{`{"error":{"message":"no status"}}`, "", false},
		{`{"error":{"status":403}}`, "", false},
		{``, "", false},
	} {
		got, ok := Message([]byte(tc.body))
		if got != tc.want || ok != tc.ok {
			t.Errorf("Message(%q) = %q, %v; want %q, %v", tc.body, got, ok, tc.want, tc.ok)
		}
	}
}
