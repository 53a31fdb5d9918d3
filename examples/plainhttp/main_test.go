package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken/client/clienttest"
	"github.com/spotoken/spotoken/emulator"
)

func TestRun(t *testing.T) {
	b := clienttest.NewBroker(t)
	b.Connect(t, "user-42")
	t.Setenv("SPOTOKEN_API_KEY", b.APIKey)
	t.Setenv("SPOTOKEN_URL", b.URL)
	t.Setenv("SPOTIFY_API_URL", b.EmulatorURL)
	t.Setenv("SPOTOKEN_CONNECTION", "user-42")

	var out bytes.Buffer
	if err := run(context.Background(), nil, &out); err != nil {
		t.Fatal(err)
	}
	var me struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	}
	if err := json.Unmarshal(out.Bytes(), &me); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if me.ID != clienttest.User || me.Email != clienttest.User+"@example.com" {
		t.Errorf("GET /v1/me: id %q, email %q", me.ID, me.Email)
	}

	// Spotify refuses the token once as expired: the client refreshes and
	// retries, and the program sees only the answer.
	if err := b.Emulator.SetFaults(emulator.Faults{APIStatus: http.StatusUnauthorized, APIMessage: "The access token expired", Count: 1}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"-path", "/v1/me"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"id": "alice"`) {
		t.Errorf("output after a 401:\n%s", out.String())
	}
	if r := b.Refreshes(); r != 1 {
		t.Errorf("refreshes = %d, want 1", r)
	}
}

func TestRunErrors(t *testing.T) {
	b := clienttest.NewBroker(t)
	b.Connect(t, "user-42", "user-read-email")
	t.Setenv("SPOTOKEN_API_KEY", b.APIKey)
	t.Setenv("SPOTOKEN_CONNECTION", "")
	args := func(extra ...string) []string {
		return append([]string{"-broker", b.URL, "-api-url", b.EmulatorURL, "-connection", "user-42"}, extra...)
	}
	var out bytes.Buffer

	// Spotify's own refusal: the scope is missing. A player endpoint says
	// so with 401 Permissions missing, which a new token does not cure: no
	// refresh, and Spotify's answer is passed on.
	refreshes := b.Refreshes()
	err := run(context.Background(), args("-path", "/v1/me/player/currently-playing"), &out)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: Permissions missing") {
		t.Errorf("GET without the scope: %v", err)
	}
	if b.Refreshes() != refreshes {
		t.Error("Permissions missing caused a refresh")
	}
	err = run(context.Background(), args("-path", "/v1/me/top/tracks"), &out)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden: Insufficient client scope") {
		t.Errorf("GET without the scope: %v", err)
	}

	// The user removed the app: the connect link.
	b.RevokeGrant(t)
	b.Advance(2 * time.Hour)
	err = run(context.Background(), args(), &out)
	if err == nil || !strings.Contains(err.Error(), "send them to "+b.URL+"/connect/") {
		t.Errorf("GET after revocation: %v, want the connect link", err)
	}

	for _, bad := range [][]string{args("-path", "me"), args("extra"), {"-connection", ""}} {
		if err := run(context.Background(), bad, &out); !errors.As(err, new(usageError)) {
			t.Errorf("run(%q): %v, want a usage error", bad, err)
		}
	}
}
