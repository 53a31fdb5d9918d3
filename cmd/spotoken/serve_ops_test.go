package main

// End-to-end tests of serve's operations flags, from outside through the
// built binary: --admin-addr, /metrics access, HSTS and TLS reloading.

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotoken/spotoken/internal/tlsreload/tlstest"
)

// fetch GETs url with client and an optional bearer token.
func fetch(t *testing.T, client *http.Client, url, bearer string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// serveJSON starts serve --emulator --json with args and returns the
// process and its start-up facts.
func serveJSON(t *testing.T, args ...string) (*proc, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"serve", "--emulator", "--json", "--db", filepath.Join(dir, "spotoken.db")}, args...)
	p := startSpotoken(t, []string{"XDG_DATA_HOME=" + dir}, args...)
	var info map[string]string
	if err := json.Unmarshal([]byte(p.URL), &info); err != nil {
		t.Fatalf("first line %q: %v", p.URL, err)
	}
	return p, info
}

// TestBinaryAdminAddr: with --admin-addr, the public listener serves the
// API, connect/callback and health, and neither /metrics nor the dashboard;
// the admin listener serves those and none of the API.
func TestBinaryAdminAddr(t *testing.T) {
	p, info := serveJSON(t, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	pub, admin, key := info["url"], info["admin_url"], info["api_key"]
	if !strings.HasPrefix(admin, "http://127.0.0.1:") || admin == pub {
		t.Fatalf("admin_url %q (public %q)", admin, pub)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		url, bearer string
		want        int
		body        string
	}{
		{pub + "/healthz", "", 200, `"ok"`},
		{pub + "/v1/connections", key, 200, `"connections"`},
		{pub + "/openapi.json", "", 200, `"openapi"`},
		{pub + "/metrics", "", 404, `"not_found"`},
		{pub + "/", "", 404, `"not_found"`},
		{pub + "/dashboard/login", "", 404, `"not_found"`},
		{admin + "/metrics", "", 200, "spotoken_http_requests_total"},
		{admin + "/dashboard/login", "", 200, "<form"},
		{admin + "/", "", 303, ""},
		{admin + "/healthz", "", 200, `"ok"`},
		{admin + "/v1/connections", key, 404, `"not_found"`},
		{admin + "/connect/cs_x", "", 404, `"not_found"`},
	} {
		status, _, body := fetch(t, noRedirect, tt.url, tt.bearer)
		if status != tt.want || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s: %d, want %d with %q: %.200s", tt.url, status, tt.want, tt.body, body)
		}
	}
	// The admin listener's /metrics counts the public listener's requests:
	// one process, one registry.
	if _, _, body := fetch(t, http.DefaultClient, admin+"/metrics", ""); !strings.Contains(body, `route="GET /v1/connections"`) {
		t.Errorf("admin /metrics lacks the public listener's requests")
	}
	if code := p.Stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM; stderr:\n%s", code, p.Stderr)
	}
}

// TestBinaryMetricsExposure: without --admin-addr, /metrics is served on a
// loopback --addr, refused on one anyone may reach unless a token guards
// it, and behind --metrics-token-file only with the token.
func TestBinaryMetricsExposure(t *testing.T) {
	_, info := serveJSON(t, "--addr", "127.0.0.1:0")
	if status, _, _ := fetch(t, http.DefaultClient, info["url"]+"/metrics", ""); status != 200 {
		t.Errorf("loopback --addr: /metrics %d, want 200", status)
	}

	p, info := serveJSON(t, "--addr", "0.0.0.0:0")
	if status, _, body := fetch(t, http.DefaultClient, info["url"]+"/metrics", ""); status != 404 || !strings.Contains(body, "--admin-addr") {
		t.Errorf("public --addr without a token: /metrics %d %s, want 404 saying why", status, body)
	}
	if !strings.Contains(p.Stderr.String(), "/metrics is not served") {
		t.Errorf("no warning that /metrics is off:\n%s", p.Stderr)
	}

	const token = "0123456789abcdef0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, info = serveJSON(t, "--addr", "0.0.0.0:0", "--metrics-token-file", tokenFile)
	if status, _, _ := fetch(t, http.DefaultClient, info["url"]+"/metrics", ""); status != 401 {
		t.Errorf("--metrics-token-file, no token: /metrics %d, want 401", status)
	}
	if status, _, body := fetch(t, http.DefaultClient, info["url"]+"/metrics", token); status != 200 || !strings.Contains(body, "spotoken_") {
		t.Errorf("--metrics-token-file, the token: /metrics %d, want 200", status)
	}
	p.Stop()
	if strings.Contains(p.Stderr.String(), token) {
		t.Error("the log holds the metrics token")
	}

	// A token too short to be one is a usage error.
	os.WriteFile(tokenFile, []byte("short\n"), 0o600)
	if _, stderr, code := runSpotoken(t, nil, "", "serve", "--emulator", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "x.db"),
		"--metrics-token-file", tokenFile); code != exitUsage || !strings.Contains(stderr, "16 to 4096") {
		t.Errorf("a short metrics token: exit %d: %s", code, stderr)
	}
}

// servedName dials the TLS listener at url and returns the common name of
// the certificate it presents.
func servedName(t *testing.T, url string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// waitServed waits (up to 30s) until every url serves the certificate for
// name. The reload happens in the process under test, on its own time: the
// test polls what a client sees.
func waitServed(t *testing.T, name string, urls ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, u := range urls {
		for got := servedName(t, u); got != name; got = servedName(t, u) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves %q, want %q", u, got, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestBinaryTLSReload: serve under TLS sends HSTS, and serves a replaced
// certificate on SIGHUP (on both listeners) without a restart; with
// --tls-watch-interval it picks the change up on its own; a broken
// replacement leaves the old certificate in place.
func TestBinaryTLSReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	tlstest.Write(t, certFile, keyFile, "first.example")
	p, info := serveJSON(t, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--tls-watch-interval", "0")
	pub, admin := info["url"], info["admin_url"]
	if !strings.HasPrefix(pub, "https://") || !strings.HasPrefix(admin, "https://") {
		t.Fatalf("urls %q and %q, want https", pub, admin)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, u := range []string{pub + "/healthz", pub + "/nope", admin + "/metrics"} {
		if _, hdr, _ := fetch(t, insecure, u, ""); hdr.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("GET %s: Strict-Transport-Security %q", u, hdr.Get("Strict-Transport-Security"))
		}
	}
	waitServed(t, "first.example", pub, admin)

	// Renewed: new files, then SIGHUP.
	tlstest.Write(t, certFile, keyFile, "second.example")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServed(t, "second.example", pub, admin)

	// A broken renewal (a certificate without its key) and SIGHUP: the
	// served certificate stays, and the process too.
	other := tlstest.New(t, "third.example")
	os.WriteFile(certFile, other.CertPEM, 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Stderr.String(), "was not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the refused reload:\n%s", p.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := servedName(t, pub); got != "second.example" {
		t.Errorf("after a broken renewal, served %q, want second.example", got)
	}
	if code := p.Stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM; stderr:\n%s", code, p.Stderr)
	}
	if strings.Contains(p.Stderr.String(), "PRIVATE KEY") {
		t.Error("the log holds key material")
	}

	// Without SIGHUP: the watcher sees the files change.
	tlstest.Write(t, certFile, keyFile, "fourth.example")
	_, info = serveJSON(t, "--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--tls-watch-interval", "50ms")
	waitServed(t, "fourth.example", info["url"])
	tlstest.Write(t, certFile, keyFile, "fifth.example")
	waitServed(t, "fifth.example", info["url"])

	// Without TLS, SIGHUP is logged and ignored.
	p, info = serveJSON(t, "--addr", "127.0.0.1:0")
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Stderr.String(), "nothing to reload") {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP without TLS: no log line:\n%s", p.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _, _ := fetch(t, http.DefaultClient, info["url"]+"/healthz", ""); status != 200 {
		t.Errorf("after SIGHUP without TLS: /healthz %d", status)
	}
}
