package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zmb3/spotify/v2"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/clienttest"
)

func TestRun(t *testing.T) {
	b := clienttest.NewBroker(t)
	b.Connect(t, "user-42")
	t.Setenv("SPOTOKEN_API_KEY", b.APIKey)
	t.Setenv("SPOTOKEN_CONNECTION", "")
	args := []string{"-broker", b.URL, "-connection", "user-42", "-api-url", b.EmulatorURL + "/"}
	ctx := context.Background()

	var out bytes.Buffer
	if err := run(ctx, args, &out); err != nil {
		t.Fatal(err)
	}
	if want := "user: alice (alice)\nplaying: nothing\n"; out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}

	// Start playback, as the user would in their Spotify app.
	c, err := client.New(b.URL, b.APIKey)
	if err != nil {
		t.Fatal(err)
	}
	sp := spotify.New(c.HTTPClient("user-42"), spotify.WithBaseURL(b.EmulatorURL+"/v1/"))
	if err := sp.Play(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := sp.PlayerCurrentlyPlaying(ctx)
	if err != nil || cp.Item == nil {
		t.Fatalf("currently playing: %v, %v", cp, err)
	}

	// After the token expired: the broker refreshes it.
	b.Advance(2 * time.Hour)
	out.Reset()
	if err := run(ctx, args, &out); err != nil {
		t.Fatal(err)
	}
	if r := b.Refreshes(); r != 1 {
		t.Errorf("refreshes = %d, want 1", r)
	}
	want := "user: alice (alice)\nplaying: " + cp.Item.Name + " by " + cp.Item.Artists[0].Name
	if !strings.HasPrefix(out.String(), want) {
		t.Errorf("output:\n%s\nwant it to start with:\n%s", out.String(), want)
	}
}

func TestRunNeedsReauth(t *testing.T) {
	b := clienttest.NewBroker(t)
	b.Connect(t, "user-42")
	t.Setenv("SPOTOKEN_API_KEY", b.APIKey)
	b.RevokeGrant(t)
	b.Advance(2 * time.Hour)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-broker", b.URL, "-connection", "user-42", "-api-url", b.EmulatorURL}, &out)
	if err == nil || !strings.Contains(err.Error(), "send them to "+b.URL+"/connect/") {
		t.Errorf("run after revocation: %v, want the connect link", err)
	}
}

func TestRunUsage(t *testing.T) {
	t.Setenv("SPOTOKEN_CONNECTION", "")
	tests := []struct {
		name string
		key  string
		args []string
	}{
		{"no connection", "sk_x", nil},
		{"no key", "", []string{"-connection", "user-42"}},
		{"extra argument", "sk_x", []string{"-connection", "user-42", "more"}},
		{"unknown flag", "sk_x", []string{"-nope"}},
		{"bad broker URL", "sk_x", []string{"-connection", "user-42", "-broker", "not a url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SPOTOKEN_API_KEY", tt.key)
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out)
			if !errors.As(err, new(usageError)) {
				t.Errorf("run(%q): %v, want a usage error", tt.args, err)
			}
		})
	}
}
