package webapi

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzClassify: whatever Spotify sends, Classify does not panic, leaves the
// body as it was, passes every status but 401, and calls a 401 a scope
// problem only when its body is Spotify's error object saying so.
func FuzzClassify(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{401, spotifyError("401", message2026)},
		{401, spotifyError("401", "Permissions missing")},
		{401, spotifyError("401", legacyExpired)},
		{401, ""},
		{403, "User not registered in the Developer Dashboard"},
		{200, `{"error":{"status":401,"message":"Permissions missing"}}`},
		{401, `{"error":{"status":"401","message":["Permissions missing"]}}`},
		{401, `{"error":{"status":401,"message":"Permissions missing"}}trailing`},
	} {
		f.Add(seed.status, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		resp := &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}
		v := Classify(resp)
		rest, _ := io.ReadAll(resp.Body)
		if !bytes.Equal(rest, body) {
			t.Fatalf("the body changed: %q, want %q", rest, body)
		}
		switch {
		case status != 401 && v != Pass:
			t.Fatalf("status %d: %v, want pass", status, v)
		case status == 401 && v == Pass:
			t.Fatalf("a 401 passed")
		case v == PermissionsMissing:
			if _, ok := Message(body[:min(len(body), MaxRejectionBody)]); !ok {
				t.Fatalf("permissions missing without Spotify's error object: %q", body)
			}
		}
	})
}
