package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/clienttest"
	"github.com/spotoken/spotoken/emulator"
)

// brokerCall is one request the client made to the broker.
type brokerCall struct {
	Path string
	Body map[string]any
}

// counter is an http.RoundTripper that records the client's calls to the
// broker. When gate is set, each call waits for it to be closed (or for
// its request's context), after sending on started if that is set.
type counter struct {
	next    http.RoundTripper
	gate    chan struct{}
	started chan struct{}

	mu     sync.Mutex
	calls  []brokerCall
	tokens []string // every access token the broker handed out
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	call := brokerCall{Path: req.URL.EscapedPath()}
	if req.Body != nil {
		raw, _ := io.ReadAll(req.Body)
		req.Body.Close()
		json.Unmarshal(raw, &call.Body)
		req.Body = io.NopCloser(strings.NewReader(string(raw)))
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	gate, started := c.gate, c.started
	c.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(raw)))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(raw, &tok) == nil && tok.AccessToken != "" {
		c.mu.Lock()
		c.tokens = append(c.tokens, tok.AccessToken)
		c.mu.Unlock()
	}
	return resp, nil
}

// Tokens returns every access token the broker handed out so far.
func (c *counter) Tokens() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tokens...)
}

// Calls returns the calls made so far.
func (c *counter) Calls() []brokerCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]brokerCall(nil), c.calls...)
}

// N is the number of calls made so far.
func (c *counter) N() int { return len(c.Calls()) }

// env is a broker, a connected user "user-42", and a client of the broker
// on the broker's clock that counts its calls.
type env struct {
	b     *clienttest.Broker
	c     *client.Client
	calls *counter
}

const connID = "user-42"

func newEnv(t *testing.T, opts ...client.Option) *env {
	t.Helper()
	return newEnvWith(t, nil, opts...)
}

func newEnvWith(t *testing.T, brokerOpts []clienttest.Option, opts ...client.Option) *env {
	t.Helper()
	b := clienttest.NewBroker(t, brokerOpts...)
	b.Connect(t, connID)
	calls := &counter{next: http.DefaultTransport}
	opts = append([]client.Option{client.WithClock(b.Now), client.WithHTTPClient(&http.Client{Transport: calls})}, opts...)
	c, err := client.New(b.URL, b.APIKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &env{b: b, c: c, calls: calls}
}

// faults injects faults at the emulator.
func (e *env) faults(t *testing.T, f emulator.Faults) {
	t.Helper()
	if err := e.b.Emulator.SetFaults(f); err != nil {
		t.Fatal(err)
	}
}

// get sends GET path (such as /v1/me) to the emulator's Web API through
// hc and returns the status and body.
func (e *env) get(t *testing.T, hc *http.Client, path string) (int, string) {
	t.Helper()
	return e.getCtx(t, context.Background(), hc, path)
}

func (e *env) getCtx(t *testing.T, ctx context.Context, hc *http.Client, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.b.EmulatorURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// apiResponses counts the emulator's Web API answers with status.
func (e *env) apiResponses(status string) int64 { return e.b.Emulator.Stats().APIResponses[status] }

func intp(n int) *int { return &n }

// forceRefreshes counts the calls that asked for force_refresh.
func forceRefreshes(calls []brokerCall) int {
	n := 0
	for _, c := range calls {
		if c.Body["force_refresh"] == true {
			n++
		}
	}
	return n
}
