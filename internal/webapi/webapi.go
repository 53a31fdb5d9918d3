// Package webapi holds what both the broker's proxy and the Go SDK must
// read the same way in the Spotify Web API's answers (SPOTIFY.md). It uses
// the standard library only, so package client may import it.
package webapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
)

// MaxRejectionBody bounds how much of a 401's body TokenRejected reads.
const MaxRejectionBody = 64 << 10

// bearerInvalidToken matches error="invalid_token" in a WWW-Authenticate
// challenge (RFC 6750 §3).
var bearerInvalidToken = regexp.MustCompile(`(?i)(^|[\s,])error\s*=\s*"?invalid_token\b`)

// TokenRejected reports whether a 401 from the Web API says that the access
// token expired or is invalid: the one failure a new token cures, and so
// the one worth a refresh and a retry. Spotify's error body decides when
// there is one: "The access token expired" and "Invalid access token" do,
// any other message ("Permissions missing", "No token provided") does not,
// whatever the headers say. Without such a body, error="invalid_token" in
// WWW-Authenticate does. It reads at most MaxRejectionBody bytes of the
// body and leaves resp's body as it was.
func TokenRejected(resp *http.Response) bool {
	head, _ := io.ReadAll(io.LimitReader(resp.Body, MaxRejectionBody))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(head, &e) == nil && e.Error.Message != "" {
		switch e.Error.Message {
		case "The access token expired", "Invalid access token":
			return true
		}
		return false
	}
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if bearerInvalidToken.MatchString(v) {
			return true
		}
	}
	return false
}
