package local_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/zmb3/spotify/v2"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/clienttest"
	"github.com/spotoken/spotoken/client/local"
	"github.com/spotoken/spotoken/emulator"
)

func newLocal(t *testing.T) (*clienttest.Broker, *client.Client) {
	t.Helper()
	b := clienttest.NewBroker(t, clienttest.EmulatorConfig(func(c *emulator.Config) {
		c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways}
	}))
	b.Connect(t, "user-42")
	c, err := local.NewClient(b.Engine, clienttest.AppID, client.WithClock(b.Now))
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

func TestLocalZmb3(t *testing.T) {
	b, c := newLocal(t)
	ctx := context.Background()
	sp := spotify.New(c.HTTPClient("user-42"), spotify.WithBaseURL(b.EmulatorURL+"/v1/"))
	for i := range 3 {
		u, err := sp.CurrentUser(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if u.ID != clienttest.User {
			t.Fatalf("step %d: user %q", i, u.ID)
		}
		b.Advance(2 * time.Hour)
	}
	// Two of the three advances were followed by a call.
	if r := b.Refreshes(); r != 2 {
		t.Errorf("refreshes = %d, want 2", r)
	}

	tok, err := c.Token(ctx, "user-42")
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || !tok.Expiry.After(b.Now().Add(time.Minute)) || len(client.Scopes(tok)) == 0 {
		t.Errorf("token type %q, expiry %v, scopes %v", tok.TokenType, tok.Expiry, client.Scopes(tok))
	}
}

func TestLocal401(t *testing.T) {
	b, c := newLocal(t)
	if err := b.Emulator.SetFaults(emulator.Faults{APIStatus: http.StatusUnauthorized, APIMessage: "Invalid access token", Count: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTPClient("user-42").Get(b.EmulatorURL + "/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/me after a 401: %d", resp.StatusCode)
	}
	if r := b.Refreshes(); r != 1 {
		t.Errorf("refreshes = %d, want 1 (Invalidate of the rejected token)", r)
	}
}

func TestLocalErrors(t *testing.T) {
	b, c := newLocal(t)
	ctx := context.Background()

	_, err := c.Token(ctx, "nobody")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != client.CodeNotFound || ce.StatusCode != http.StatusNotFound {
		t.Errorf("unknown connection: %v, want not_found 404", err)
	}

	b.RevokeGrant(t)
	b.Advance(2 * time.Hour)
	_, err = c.TokenSource("user-42").Token()
	if !errors.As(err, &ce) || ce.Code != client.CodeNeedsReauth || ce.StatusCode != http.StatusConflict || ce.ConnectURL != "" {
		t.Errorf("revoked grant: %v, want needs_reauth 409 without a connect link", err)
	}
	if !errors.Is(err, spotoken.ErrNeedsReauth) || !errors.Is(err, client.ErrNeedsReauth) {
		t.Errorf("errors.Is(%v, ErrNeedsReauth) = false", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Token(cctx, "user-42"); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v, want context.Canceled", err)
	}
	if _, err := c.Token(ctx, ""); err == nil {
		t.Error("empty connection id: no error")
	}
}
