// Package webapi holds what both the broker's proxy and the Go SDK must
// read the same way in the Spotify Web API's answers (SPOTIFY.md). It uses
// the standard library only, so package client may import it.
//
// It reads Spotify by what cannot drift (DESIGN §3.6): the status decides,
// and the wording of Spotify's messages does not, with one documented
// exception. Spotify changed the message of its 401 in 2026-07 ("The access
// token expired" and "Invalid access token" became "Missing/invalid/expired
// access token") and a client that matched on the old wording stopped
// refreshing in production. So every 401 is a rejected token, except the
// one 401 that is a scope problem: "Permissions missing", which Spotify
// answers on player endpoints called without their scope.
package webapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// MaxRejectionBody bounds how much of a 401's body Classify reads.
const MaxRejectionBody = 64 << 10

// PermissionsMissingMessage is the message of Spotify's 401 for a player
// endpoint called without its scope: the one 401 that a new token does not
// cure, and the one Spotify message spotoken reads.
const PermissionsMissingMessage = "Permissions missing"

// Verdict is what a Web API answer means for the access token it was sent with.
type Verdict int

// The verdicts.
const (
	// Pass: any status but 401. The answer is the caller's, whatever it says.
	Pass Verdict = iota
	// RejectedToken: a 401 that is not PermissionsMissing. Spotify did not
	// accept the access token (expired, unknown, empty or revoked: in 2026
	// it says so with one message for all of them, before then with three).
	// A new token is the cure: refresh once and retry once per rejected
	// token.
	RejectedToken
	// PermissionsMissing: a 401 whose message is "Permissions missing": the
	// grant lacks a scope the endpoint needs. A new token does not help (it
	// carries the same grant); the user must consent to the scope.
	PermissionsMissing
)

// String names the verdict, for logs and the doctor's report.
func (v Verdict) String() string {
	switch v {
	case RejectedToken:
		return "rejected token"
	case PermissionsMissing:
		return "permissions missing"
	}
	return "pass"
}

// Classify reads a Web API answer. Only a 401's body is read, at most
// MaxRejectionBody bytes of it, and resp's body is left as it was.
func Classify(resp *http.Response) Verdict {
	if resp.StatusCode != http.StatusUnauthorized {
		return Pass
	}
	if msg, ok := Message(Peek(resp, MaxRejectionBody)); ok && strings.EqualFold(strings.TrimSpace(msg), PermissionsMissingMessage) {
		return PermissionsMissing
	}
	return RejectedToken
}

// Peek returns up to n bytes of resp's body and puts them back in front of
// the rest, so the body still reads as it was.
func Peek(resp *http.Response, n int64) []byte {
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, n))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	return head
}

// Message returns the message of Spotify's Web API error object,
// {"error": {"status": N, "message": "…"}}, and whether body is one.
// Spotify's development-mode allowlist refusal, for one, is plain text and
// not such an object.
func Message(body []byte) (string, bool) {
	var e struct {
		Error *struct {
			Status  *int    `json:"status"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Status == nil || e.Error.Message == nil {
		return "", false
	}
	return *e.Error.Message, true
}
