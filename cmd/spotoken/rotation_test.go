package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestE2ERotationLost (finding 3): with rotation on, a refresh whose
// answer is lost in transit (the emulator rotated the refresh token, the
// broker never heard) ends in needs_reauth with reason rotation_lost, not
// revoked. A proxy in front of the emulator's accounts service forwards one
// refresh and cuts the connection instead of answering.
func TestE2ERotationLost(t *testing.T) {
	emu := startSpotoken(t, nil, "emulator", "--addr", "127.0.0.1:0", "--auto-approve", "alice", "--rotation", "always",
		"--client", "spotoken-e2e=http://127.0.0.1/callback")
	var drop atomic.Bool
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest(r.Method, emu.URL+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := noRedirect.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if r.URL.Path == "/api/token" && bytes.Contains(body, []byte("grant_type=refresh_token")) && drop.CompareAndSwap(true, false) {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close() // Spotify answered; the answer never arrives
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	db := filepath.Join(t.TempDir(), "spotoken.db")
	b := startBroker(t, db, db, "--accounts-url", front.URL, "--api-url", emu.URL)
	srv, key, e := b.srv, b.key, b.e2eEnv
	f, _ := e.connect(key, "u1", "")
	if f.Final.StatusCode != 200 {
		t.Fatalf("connect: %d %s", f.Final.StatusCode, f.Body)
	}

	drop.Store(true)
	if r := e.api("POST", "/v1/connections/u1/token", key, map[string]any{"force_refresh": true}); r.Status != 200 {
		t.Fatalf("force_refresh with the answer lost: %d %s, want the still-valid token", r.Status, r.Body)
	}
	if drop.Load() {
		t.Fatal("the refresh never reached the proxy")
	}
	if c := e.connection(key, "u1"); c.LastErrorCode != "outcome_unknown" {
		t.Errorf("last_error_code %q after the lost answer, want outcome_unknown", c.LastErrorCode)
	}
	time.Sleep(2500 * time.Millisecond) // the backoff (1–2s, real time: no virtual clock here)
	r := e.api("POST", "/v1/connections/u1/token", key, map[string]any{"force_refresh": true})
	if r.Status != http.StatusConflict || r.json(t)["error"] != "needs_reauth" || !strings.Contains(string(r.Body), "rotation_lost") {
		t.Fatalf("the next refresh: %d %s, want 409 needs_reauth naming rotation_lost", r.Status, r.Body)
	}
	if logs := srv.Stderr.String(); !strings.Contains(logs, `"reason":"rotation_lost"`) {
		t.Errorf("the log does not say rotation_lost:\n%s", logs)
	}
}
