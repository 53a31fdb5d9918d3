package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// fakeLogins is a LoginHandler that names connections with name and
// records how sign-ins ended.
type fakeLogins struct {
	name func(appID, userID string) string
	mu   sync.Mutex
	got  []server.LoginResult
}

func (f *fakeLogins) LoginConnection(appID, userID string) string { return f.name(appID, userID) }

func (f *fakeLogins) FinishLogin(w http.ResponseWriter, r *http.Request, res *server.LoginResult) {
	f.mu.Lock()
	f.got = append(f.got, *res)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeLogins) results() []server.LoginResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]server.LoginResult(nil), f.got...)
}

// login starts a browser sign-in of kind for app through a route mounted
// on the public side, and follows it to its end in the harness's browser.
func (h *harness) login(kind, app string) (*http.Response, error) {
	h.t.Helper()
	return h.browser.Get(h.ts.URL + "/test-login/" + kind + "/" + app)
}

func newLoginHarness(t *testing.T) (*harness, *fakeLogins) {
	h := newHarness(t, harnessOptions{})
	f := &fakeLogins{name: func(_, userID string) string { return "u:" + userID }}
	h.srv.HandleLogins("test", f)
	h.srv.MountPublic(func(m *http.ServeMux) {
		m.HandleFunc("GET /test-login/{kind}/{app}", func(w http.ResponseWriter, r *http.Request) {
			err := h.srv.BeginLogin(w, r, server.Login{Kind: r.PathValue("kind"), AppID: r.PathValue("app"), ReturnTo: "https://app.example/"})
			if err != nil {
				h.srv.WriteError(w, r, err)
			}
		})
	})
	return h, f
}

// A browser sign-in hands its end to the handler of its kind in-process:
// the connection it names holds the grant, and nothing else was created.
func TestBrowserSignIn(t *testing.T) {
	h, f := newLoginHarness(t)
	resp, err := h.login("test", appID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	res := f.results()
	if resp.StatusCode != http.StatusNoContent || len(res) != 1 {
		t.Fatalf("sign-in: %d, results %+v", resp.StatusCode, res)
	}
	r := res[0]
	if !r.Connected() || r.AppID != appID || r.ReturnTo != "https://app.example/" || r.Connection.ID != "u:alice" ||
		r.Connection.SpotifyUserID != "alice" || r.Description != "" {
		t.Errorf("result %+v", r)
	}
	cs, err := h.store.Connections(context.Background(), spotoken.ConnectionFilter{AppID: appID})
	if err != nil || len(cs) != 1 || cs[0].ID != "u:alice" {
		t.Errorf("connections after the sign-in: %v, %v", cs, err)
	}
}

func TestBrowserSignInFailures(t *testing.T) {
	t.Run("no handler for the kind", func(t *testing.T) {
		h, _ := newLoginHarness(t)
		resp, err := h.login("other", appID)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("a sign-in of a kind nobody handles: %d, want 500 before Spotify", resp.StatusCode)
		}
	})
	t.Run("an app without spotoken's redirect URI", func(t *testing.T) {
		h, _ := newLoginHarness(t)
		if _, err := h.store.UpdateApp(context.Background(), appID, func(a *spotoken.App) error {
			a.RedirectURIs = []string{"https://elsewhere.example/callback"}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		resp, err := h.login("test", appID)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("sign-in for a misconfigured app: %d, want 502 app_misconfigured", resp.StatusCode)
		}
	})
	t.Run("a handler naming an invalid connection", func(t *testing.T) {
		h, f := newLoginHarness(t)
		f.name = func(_, userID string) string { return "../" + userID }
		resp, err := h.login("test", appID)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		res := f.results()
		if len(res) != 1 || res[0].Outcome != "server_error" || res[0].Connection != nil || !strings.Contains(res[0].Description, "Nothing was stored") {
			t.Fatalf("results %+v", res)
		}
		cs, err := h.store.Connections(context.Background(), spotoken.ConnectionFilter{AppID: appID})
		if err != nil || len(cs) != 0 {
			t.Errorf("connections: %v, %v; want none", cs, err)
		}
	})
	t.Run("the state bound to another browser", func(t *testing.T) {
		h, f := newLoginHarness(t)
		// Start in one browser, end in another: the state cookie is missing.
		first := &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.Path, "/callback") {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err := first.Get(h.ts.URL + "/test-login/test/" + appID)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		callback := resp.Header.Get("Location")
		if !strings.Contains(callback, "/callback?") {
			t.Fatalf("no redirect to the callback: %d %q", resp.StatusCode, callback)
		}
		resp, err = h.browser.Get(callback)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		res := f.results()
		if len(res) != 1 || res[0].Outcome != "state_mismatch" || res[0].Connected() {
			t.Errorf("results %+v", res)
		}
		if _, err := h.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: appID, ID: "u:alice"}); !errors.Is(err, spotoken.ErrNotFound) {
			t.Errorf("a connection was stored: %v", err)
		}
	})
}
