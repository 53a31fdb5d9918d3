package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// adminEnv is a database and key file for running the admin commands.
type adminEnv struct {
	t       *testing.T
	db      string // a SQLite path or a postgres:// URL
	keyFile string
}

// newAdminEnv returns an environment on backend "sqlite" (a file in a
// temporary directory, not created yet) or "postgres" (a fresh schema;
// skipped unless SPOTOKEN_TEST_POSTGRES is set).
func newAdminEnv(t *testing.T, backend string) *adminEnv {
	t.Helper()
	dir := t.TempDir()
	e := &adminEnv{t: t, keyFile: filepath.Join(dir, "keys.json")}
	switch backend {
	case "sqlite":
		e.db = filepath.Join(dir, "spotoken.db")
	case "postgres":
		e.db = pgtest.FreshSchema(t, pgtest.DSN(t), "cli")
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	if _, err := seal.GenerateKeyFile(e.keyFile); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs spotoken with args plus --db and --key-file, stdin as its
// standard input, and returns its stdout, stderr and exit status.
func (e *adminEnv) run(stdin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errb bytes.Buffer
	args = slices.Concat(args, []string{"--db", e.db, "--key-file", e.keyFile})
	code = Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs the command and fails the test unless it exits 0.
func (e *adminEnv) ok(stdin string, args ...string) (stdout, stderr string) {
	e.t.Helper()
	stdout, stderr, code := e.run(stdin, args...)
	if code != exitOK {
		e.t.Fatalf("spotoken %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout, stderr
}

// fails runs the command and fails the test unless it exits with want and
// stderr holds wantErr.
func (e *adminEnv) fails(want int, wantErr, stdin string, args ...string) (stdout, stderr string) {
	e.t.Helper()
	stdout, stderr, code := e.run(stdin, args...)
	if code != want || !strings.Contains(stderr, wantErr) {
		e.t.Errorf("spotoken %s: exit %d, want %d with %q on stderr\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), code, want, wantErr, stdout, stderr)
	}
	return stdout, stderr
}

// okJSON runs the command with --json and decodes its stdout into v.
func (e *adminEnv) okJSON(v any, stdin string, args ...string) (stderr string) {
	e.t.Helper()
	stdout, stderr := e.ok(stdin, slices.Concat(args, []string{"--json"})...)
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		e.t.Fatalf("spotoken %s --json: %v\nstdout: %s", strings.Join(args, " "), err, stdout)
	}
	return stderr
}

// open opens the environment's database directly, with the same keys.
func (e *adminEnv) open() spotoken.Store {
	e.t.Helper()
	ring, err := seal.LoadKeyFile(e.keyFile)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := context.Background()
	var store spotoken.Store
	if strings.HasPrefix(e.db, "postgres") {
		store, err = postgres.Open(ctx, postgres.Config{DSN: e.db, Keys: ring})
	} else {
		store, err = sqlite.Open(ctx, sqlite.Config{Path: e.db, Keys: ring})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { store.Close() })
	return store
}

// appNames lists the apps' names through 'apps list --json'.
func (e *adminEnv) appNames() []string {
	e.t.Helper()
	var apps []appView
	e.okJSON(&apps, "", "apps", "list")
	names := []string{}
	for _, a := range apps {
		names = append(names, a.Name)
	}
	return names
}

// createApp registers a public app with the redirect URI the emulator uses.
func (e *adminEnv) createApp(name string, extra ...string) {
	e.t.Helper()
	e.ok("", slices.Concat([]string{"apps", "create", "--name", name, "--client-id", "client-" + name,
		"--redirect-uri", "http://127.0.0.1:8080/callback"}, extra)...)
}

// createdApp is 'apps create --json' output.
type createdApp struct {
	appView
	WebhookSecret string `json:"webhook_secret"`
}

// createdKey is 'apikeys create --json' output.
type createdKey struct {
	Key string `json:"key"`
	apiKeyView
}

func TestAppsCreate(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	store := func() spotoken.Store { return e.open() }

	// A public app, readable output, with every optional flag but a secret.
	out, errOut := e.ok("", "apps", "create", "--name", "sync.v2_beta-1", "--client-id", "0123456789abcdef",
		"--redirect-uri", "https://broker.example/callback", "--redirect-uri", "http://127.0.0.1:8080/callback",
		"--scopes", "user-top-read, user-read-private user-top-read",
		"--return-to", "HTTPS://App.Example:443/", "--return-to", "http://[::1]:3000", "--return-to", "https://app.example",
		"--webhook-url", "https://app.example/hooks/spotoken?v=1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "sync.v2_beta-1") || !strings.Contains(lines[0], "public") {
		t.Fatalf("apps create stdout:\n%s", out)
	}
	whsec, ok := strings.CutPrefix(lines[1], "webhook secret: ")
	if !ok || !strings.HasPrefix(whsec, spotoken.WebhookSecretPrefix) {
		t.Fatalf("second line %q, want the webhook secret", lines[1])
	}
	if _, err := spotoken.WebhookKey(spotoken.Secret(whsec)); err != nil {
		t.Errorf("printed webhook secret: %v", err)
	}
	if !strings.Contains(errOut, "shown only this once") || strings.Contains(errOut, whsec) {
		t.Errorf("stderr should say the secret is shown once, without it:\n%s", errOut)
	}

	got, err := store().App(context.Background(), "sync.v2_beta-1")
	if err != nil {
		t.Fatal(err)
	}
	want := &spotoken.App{
		ID: "sync.v2_beta-1", ClientID: "0123456789abcdef",
		RedirectURIs:    []string{"https://broker.example/callback", "http://127.0.0.1:8080/callback"},
		DefaultScopes:   spotoken.Scopes{"user-read-private", "user-top-read"},
		ReturnToOrigins: []string{"https://app.example", "http://[::1]:3000"},
		WebhookURL:      "https://app.example/hooks/spotoken?v=1",
		WebhookSecret:   spotoken.Secret(whsec),
	}
	if diff := cmp.Diff(got, want, cmp.FilterPath(func(p cmp.Path) bool {
		n := p.Last().String()
		return n == ".CreatedAt" || n == ".UpdatedAt"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("stored app (-got +want):\n%s", diff)
	}

	// A confidential app with --json, its secret from standard input.
	var created createdApp
	e.okJSON(&created, "stdin-secret-0123456789\n", "apps", "create", "--name", "conf", "--client-id", "c2",
		"--redirect-uri", "https://broker.example/callback", "--client-secret-stdin", "--webhook-url", "http://127.0.0.1:9/hook")
	if created.Name != "conf" || created.ClientType != "confidential" || created.ClientID != "c2" ||
		!strings.HasPrefix(created.WebhookSecret, spotoken.WebhookSecretPrefix) {
		t.Errorf("apps create --json: %+v", created)
	}
	if conf, err := store().App(context.Background(), "conf"); err != nil || conf.ClientSecret.Reveal() != "stdin-secret-0123456789" ||
		conf.WebhookSecret.Reveal() != created.WebhookSecret {
		t.Errorf("stored app: %v, secret from stdin stored as expected: %t, webhook secret: %t", err,
			conf != nil && conf.ClientSecret.Reveal() == "stdin-secret-0123456789", conf != nil && conf.WebhookSecret.Reveal() == created.WebhookSecret)
	}

	// A confidential app, its secret from a file with a CRLF ending; no webhook.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("file-secret-abcdef\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = e.ok("", "apps", "create", "--name", "fromfile", "--client-id", "c3",
		"--redirect-uri", "https://broker.example/callback", "--client-secret-file", secretFile)
	if strings.Contains(out, "webhook secret") || !strings.Contains(out, "confidential") {
		t.Errorf("apps create without a webhook:\n%s", out)
	}
	if a, err := store().App(context.Background(), "fromfile"); err != nil || a.ClientSecret.Reveal() != "file-secret-abcdef" || a.WebhookSecret != "" {
		t.Errorf("stored app from file: %v; secret ok %t, webhook secret empty %t", err,
			a != nil && a.ClientSecret.Reveal() == "file-secret-abcdef", a != nil && a.WebhookSecret == "")
	}

	// apps list: readable and JSON, never a secret.
	out, _ = e.ok("", "apps", "list")
	for _, want := range []string{"NAME", "TYPE", "conf", "confidential", "sync.v2_beta-1", "public", "user-read-private user-top-read", "https://app.example/hooks/spotoken?v=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("apps list does not show %q:\n%s", want, out)
		}
	}
	var apps []appView
	e.okJSON(&apps, "", "apps", "list")
	if len(apps) != 3 {
		t.Fatalf("apps list --json: %d apps, want 3", len(apps))
	}
	if diff := cmp.Diff(apps[2], appView{
		Name: "sync.v2_beta-1", ClientID: "0123456789abcdef", ClientType: "public",
		RedirectURIs: want.RedirectURIs, Scopes: want.DefaultScopes, ReturnToOrigins: want.ReturnToOrigins,
		WebhookURL: want.WebhookURL, CreatedAt: got.CreatedAt.UTC(), UpdatedAt: got.UpdatedAt.UTC(),
	}); diff != "" {
		t.Errorf("apps list --json (-got +want):\n%s", diff)
	}
	if apps[1].Name != "fromfile" || apps[1].ClientType != "confidential" || len(apps[1].Scopes) != 0 || apps[1].Scopes == nil {
		t.Errorf("apps list --json, second app: %+v", apps[1])
	}
	jsonOut, _ := e.ok("", "--json", "apps", "list") // --json before the command works too
	for _, secret := range []string{whsec, created.WebhookSecret, "stdin-secret-0123456789", "file-secret-abcdef"} {
		if strings.Contains(out, secret) || strings.Contains(jsonOut, secret) {
			t.Errorf("apps list shows a secret")
		}
	}
	if strings.Contains(jsonOut, "secret") {
		t.Errorf("apps list --json has a secret field:\n%s", jsonOut)
	}

	// A second app with the same name is a failure, not a usage error.
	e.fails(exitFailure, `an app named "conf" already exists`, "other-secret\n", "apps", "create", "--name", "conf", "--client-id", "x",
		"--redirect-uri", "https://broker.example/callback", "--client-secret-stdin")
	if a, err := store().App(context.Background(), "conf"); err != nil || a.ClientID != "c2" {
		t.Errorf("the conflicting create changed the app: %v %+v", err, a)
	}
}

func TestAppsCreateUsageErrors(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	base := []string{"apps", "create", "--client-id", "cid", "--redirect-uri", "https://broker.example/callback"}
	// named returns a fresh argument list: base, a valid --name, and extra.
	named := func(extra ...string) []string { return slices.Concat(base, []string{"--name", "bad"}, extra) }
	withName := func(name string) []string { return slices.Concat(base, []string{"--name", name}) }
	missingFile := filepath.Join(t.TempDir(), "no-such-file")
	tests := []struct {
		name    string
		stdin   string
		args    []string
		wantErr string
	}{
		{"no name", "", base, "--name is required"},
		{"name with a space", "", withName("my app"), "only letters, digits"},
		{"name with a slash", "", withName("a/b"), "only letters, digits"},
		{"name with a non-ASCII letter", "", withName("café"), "only letters, digits"},
		{"name too long", "", withName(strings.Repeat("a", 65)), "at most 64 characters"},
		{"no client id", "", []string{"apps", "create", "--name", "bad", "--redirect-uri", "https://broker.example/callback"}, "--client-id is required"},
		{"client id with a space", "", []string{"apps", "create", "--name", "bad", "--client-id", "a b", "--redirect-uri", "https://broker.example/callback"}, "--client-id"},
		{"no redirect URI", "", []string{"apps", "create", "--name", "bad", "--client-id", "cid"}, "--redirect-uri is required"},
		{"relative redirect URI", "", named("--redirect-uri", "/callback"), `--redirect-uri "/callback": want an absolute`},
		{"redirect URI without a host", "", named("--redirect-uri", "https:///callback"), "no host"},
		{"custom-scheme redirect URI", "", named("--redirect-uri", "myapp://callback"), "want an absolute http:// or https:// URL"},
		{"redirect URI with a fragment", "", named("--redirect-uri", "https://b.example/cb#x"), "fragment"},
		{"redirect URI with an empty fragment", "", named("--redirect-uri", "https://b.example/cb#"), "fragment"},
		{"unknown scope", "", named("--scopes", "user-read-private user-read-mind"), `unknown Spotify scope "user-read-mind"; valid scopes are: app-remote-control`},
		{"return-to with a path", "", named("--return-to", "https://app.example/back"), "scheme://host[:port] only"},
		{"return-to with a query", "", named("--return-to", "https://app.example?x=1"), "scheme://host[:port] only"},
		{"return-to with a fragment", "", named("--return-to", "https://app.example#x"), "scheme://host[:port] only"},
		{"return-to with a user", "", named("--return-to", "https://u@app.example"), "scheme://host[:port] only"},
		{"return-to without a scheme", "", named("--return-to", "app.example"), "want an origin"},
		{"return-to with another scheme", "", named("--return-to", "ftp://app.example"), "want an origin"},
		{"return-to with a bad port", "", named("--return-to", "https://app.example:x"), "--return-to"},
		{"relative webhook URL", "", named("--webhook-url", "hooks/spotoken"), "--webhook-url"},
		{"webhook URL with another scheme", "", named("--webhook-url", "ftp://app.example/hook"), "--webhook-url"},
		{"both secret flags", "s\n", named("--client-secret-stdin", "--client-secret-file", "f"), "not both"},
		{"empty secret on stdin", "\n", named("--client-secret-stdin"), "client secret from standard input is empty"},
		{"secret with two lines", "a\nb\n", named("--client-secret-stdin"), "line breaks"},
		{"missing secret file", "", named("--client-secret-file", missingFile), "--client-secret-file"},
		{"secret on the command line", "", named("--client-secret", "s3cret"), "unknown flag: --client-secret"},
		{"an argument", "", named("extra"), "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			_, stderr := e.fails(exitUsage, tt.wantErr, tt.stdin, tt.args...)
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("stderr repeats the secret:\n%s", stderr)
			}
		})
	}
	e.t = t
	// Nothing was stored, nor even the database created.
	if _, err := os.Stat(e.db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed apps create made the database: %v", err)
	}
	e.createApp("good")
	for _, tt := range tests {
		e.run(tt.stdin, tt.args...)
	}
	if diff := cmp.Diff(e.appNames(), []string{"good"}); diff != "" {
		t.Errorf("apps after the usage errors (-got +want):\n%s", diff)
	}
}

func TestAppsDelete(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.fails(exitFailure, "no database", "", "apps", "list") // list must not create it
	e.createApp("one")
	e.createApp("two")
	key, _ := e.ok("", "apikeys", "create", "--app", "one")
	store := e.open()
	ctx := context.Background()
	for _, id := range []string{"u1", "u2"} {
		if err := store.CreateConnection(ctx, &spotoken.Connection{AppID: "one", ID: id, State: spotoken.StateActive,
			Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}

	out, _ := e.ok("", "apps", "delete", "one")
	for _, want := range []string{"Deleted app one with its 1 API key and 2 connections", "https://www.spotify.com/account/apps/"} {
		if !strings.Contains(out, want) {
			t.Errorf("apps delete output lacks %q:\n%s", want, out)
		}
	}
	if diff := cmp.Diff(e.appNames(), []string{"two"}); diff != "" {
		t.Errorf("apps after delete (-got +want):\n%s", diff)
	}
	if _, err := store.Connection(ctx, spotoken.ConnectionKey{AppID: "one", ID: "u1"}); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("connection of a deleted app: %v", err)
	}
	if _, err := store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(strings.TrimSpace(key)))); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("API key of a deleted app: %v", err)
	}

	var deleted struct {
		Name        string `json:"name"`
		Deleted     bool   `json:"deleted"`
		APIKeys     int    `json:"api_keys"`
		Connections int    `json:"connections"`
	}
	e.okJSON(&deleted, "", "apps", "delete", "two")
	if deleted.Name != "two" || !deleted.Deleted || deleted.APIKeys != 0 || deleted.Connections != 0 {
		t.Errorf("apps delete --json: %+v", deleted)
	}
	e.fails(exitFailure, `no app named "two"`, "", "apps", "delete", "two")
	e.fails(exitUsage, "takes 1 argument", "", "apps", "delete")
	out, _ = e.ok("", "apps", "list")
	if !strings.Contains(out, "No apps") {
		t.Errorf("apps list with no apps: %q", out)
	}
	if out, _ := e.ok("", "apps", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("apps list --json with no apps: %q, want []", out)
	}
}

var apiKeyPattern = regexp.MustCompile(`^sk_[A-Za-z0-9_-]{32}$`)

func TestAPIKeys(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("app")
	e.createApp("other")
	ctx := context.Background()

	out, errOut := e.ok("", "apikeys", "create", "--app", "app", "--name", "sync worker")
	key, rest, _ := strings.Cut(out, "\n")
	if !apiKeyPattern.MatchString(key) || rest != "" {
		t.Fatalf("apikeys create stdout %q, want the key alone on one line", out)
	}
	if !strings.Contains(errOut, "shown only this once") || strings.Contains(errOut, key) {
		t.Errorf("apikeys create stderr should say the key is shown once, without it:\n%s", errOut)
	}
	rec, err := e.open().APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(key)))
	if err != nil || rec.AppID != "app" || rec.Name != "sync worker" || !strings.HasPrefix(key, rec.Prefix) {
		t.Fatalf("stored key: %v %+v", err, rec)
	}

	var created createdKey
	e.okJSON(&created, "", "apikeys", "create", "--app", "app")
	if !apiKeyPattern.MatchString(created.Key) || !strings.HasPrefix(created.ID, "key_") || !strings.HasPrefix(created.Key, created.Prefix) ||
		created.App != "app" || created.Revoked || created.CreatedAt.IsZero() {
		t.Errorf("apikeys create --json: %+v", created)
	}
	e.ok("", "apikeys", "create", "--app", "other")

	out, _ = e.ok("", "apikeys", "list", "--app", "app")
	for _, want := range []string{"ID", "LAST USED", rec.ID, "sync worker", rec.Prefix + "…", created.ID, "never"} {
		if !strings.Contains(out, want) {
			t.Errorf("apikeys list lacks %q:\n%s", want, out)
		}
	}
	var keys []apiKeyView
	e.okJSON(&keys, "", "apikeys", "list", "--app", "app")
	want := []apiKeyView{
		{ID: rec.ID, App: "app", Name: "sync worker", Prefix: rec.Prefix, CreatedAt: rec.CreatedAt.UTC()},
		created.apiKeyView,
	}
	if diff := cmp.Diff(keys, want); diff != "" {
		t.Errorf("apikeys list --json (-got +want):\n%s", diff)
	}
	jsonOut, _ := e.ok("", "apikeys", "list", "--app", "app", "--json")
	for _, k := range []string{key, created.Key} {
		if strings.Contains(out, k) || strings.Contains(jsonOut, k) {
			t.Error("apikeys list shows a key")
		}
	}
	if strings.Contains(jsonOut, `"key"`) || strings.Contains(jsonOut, "hash") {
		t.Errorf("apikeys list --json has a key or hash field:\n%s", jsonOut)
	}

	// Revoke, then list shows it revoked; the other key stays active.
	out, _ = e.ok("", "apikeys", "revoke", "--app", "app", rec.ID)
	if !strings.Contains(out, "Revoked API key "+rec.ID) {
		t.Errorf("apikeys revoke: %q", out)
	}
	var revoked apiKeyView
	e.okJSON(&revoked, "", "apikeys", "revoke", "--app", "app", rec.ID) // again: keeps the first time
	keys = nil
	e.okJSON(&keys, "", "apikeys", "list", "--app", "app")
	if len(keys) != 2 || !keys[0].Revoked || keys[0].RevokedAt == nil || keys[1].Revoked || keys[1].RevokedAt != nil {
		t.Fatalf("apikeys list after revoke: %+v", keys)
	}
	if !revoked.Revoked || !revoked.RevokedAt.Equal(*keys[0].RevokedAt) {
		t.Errorf("second revoke: %+v, list: %+v", revoked, keys[0])
	}
	out, _ = e.ok("", "apikeys", "list", "--app", "app")
	if line := lineWith(out, rec.ID); !strings.Contains(line, keys[0].RevokedAt.Format(time.RFC3339)) {
		t.Errorf("apikeys list does not show the revocation time:\n%s", out)
	}
	if line := lineWith(out, created.ID); !strings.HasSuffix(strings.TrimSpace(line), "-") {
		t.Errorf("apikeys list shows the active key revoked: %q", line)
	}

	e.fails(exitFailure, `app app has no API key "key_nope"`, "", "apikeys", "revoke", "--app", "app", "key_nope")
	otherKeys := []apiKeyView{}
	e.okJSON(&otherKeys, "", "apikeys", "list", "--app", "other")
	e.fails(exitFailure, `has no API key`, "", "apikeys", "revoke", "--app", "app", otherKeys[0].ID) // another app's key
	e.fails(exitFailure, `no app named "nope"`, "", "apikeys", "create", "--app", "nope")
	e.fails(exitFailure, `no app named "nope"`, "", "apikeys", "list", "--app", "nope")
	e.fails(exitFailure, `no app named "nope"`, "", "apikeys", "revoke", "--app", "nope", "key_x")
	e.fails(exitUsage, "--app is required", "", "apikeys", "create")
	e.fails(exitUsage, "--app is required", "", "apikeys", "list")
	e.fails(exitUsage, "takes 1 argument", "", "apikeys", "revoke", "--app", "app")
	e.fails(exitUsage, "control characters", "", "apikeys", "create", "--app", "app", "--name", "a\x1bb")
	e.fails(exitUsage, "at most 100 characters", "", "apikeys", "create", "--app", "app", "--name", strings.Repeat("x", 101))
	keys = nil
	e.okJSON(&keys, "", "apikeys", "list", "--app", "app")
	if len(keys) != 2 {
		t.Errorf("failed creates stored keys: %+v", keys)
	}
}

// lineWith returns the first line of s that contains sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// TestSecretsNotStoredInTheClear reads the raw database files: neither the
// client secret, the webhook secret nor an API key may appear in them.
func TestSecretsNotStoredInTheClear(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	clientSecret := "client-secret-7f3a9c1e5b2d4f60"
	created := createdApp{}
	e.okJSON(&created, clientSecret+"\n", "apps", "create", "--name", "app", "--client-id", "cid",
		"--redirect-uri", "https://broker.example/callback", "--client-secret-stdin", "--webhook-url", "https://app.example/hook")
	var key createdKey
	e.okJSON(&key, "", "apikeys", "create", "--app", "app")
	secrets := map[string]string{"client secret": clientSecret, "webhook secret": created.WebhookSecret, "API key": key.Key}
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("no %s", what)
		}
	}
	// The secrets are stored (sealed): the store opens them.
	if a, err := e.open().App(context.Background(), "app"); err != nil || a.ClientSecret.Reveal() != clientSecret || a.WebhookSecret.Reveal() != created.WebhookSecret {
		t.Fatalf("stored app: %v", err)
	}

	files := []string{e.db, e.db + "-wal"}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) && f != e.db {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range secrets {
			for _, form := range []string{s, strings.TrimPrefix(s, spotoken.WebhookSecretPrefix), strings.TrimPrefix(s, spotoken.APIKeyPrefix)} {
				if bytes.Contains(raw, []byte(form)) {
					t.Errorf("%s holds the %s in the clear", filepath.Base(f), what)
				}
			}
		}
	}
	var out bytes.Buffer
	for _, args := range [][]string{{"apps", "list"}, {"apps", "list", "--json"}, {"apikeys", "list", "--app", "app"}, {"apikeys", "list", "--app", "app", "--json"}} {
		stdout, stderr := e.ok("", args...)
		out.WriteString(stdout + stderr)
	}
	for what, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Errorf("a list shows the %s", what)
		}
	}
}

// seedConnections stores connections for app, with the given ids and
// states, straight through the store API.
func seedConnections(t *testing.T, store spotoken.Store, app string, states map[string]spotoken.State) {
	t.Helper()
	now := time.Now()
	for id, state := range states {
		c := &spotoken.Connection{AppID: app, ID: id, SpotifyUserID: "spotify-" + id, DisplayName: "User " + id,
			Scopes: spotoken.Scopes{"user-read-private"}, State: state, ConsentedAt: now.Add(-time.Hour), GrantExpiresAt: now.Add(180 * 24 * time.Hour)}
		if state != spotoken.StateRevoked {
			c.Token = spotoken.Token{AccessToken: spotoken.Secret("access-token-" + id), RefreshToken: spotoken.Secret("refresh-token-" + id), Expiry: now.Add(time.Hour)}
		}
		if state == spotoken.StateNeedsReauth {
			c.LastErrorCode = "invalid_grant"
		}
		if err := store.CreateConnection(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

func connectionIDs(l server.ConnectionList) []string {
	ids := []string{}
	for _, c := range l.Connections {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestConnections(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("app")
	e.createApp("other")
	store := e.open()
	ctx := context.Background()
	seedConnections(t, store, "app", map[string]spotoken.State{
		"c01": spotoken.StateActive, "c02": spotoken.StateNeedsReauth, "c03": spotoken.StateActive,
		"c04": spotoken.StateRevoked, "c05": spotoken.StateActive,
	})
	seedConnections(t, store, "other", map[string]spotoken.State{"c00": spotoken.StateActive})

	t.Run("list pages", func(t *testing.T) {
		e.t = t
		var pages [][]string
		var cursors []string
		cursor := ""
		for range 5 {
			var l server.ConnectionList
			args := []string{"connections", "list", "--app", "app", "--limit", "2"}
			if cursor != "" {
				args = append(args, "--cursor", cursor)
			}
			e.okJSON(&l, "", args...)
			pages, cursors = append(pages, connectionIDs(l)), append(cursors, l.NextCursor)
			if cursor = l.NextCursor; cursor == "" {
				break
			}
		}
		if diff := cmp.Diff(pages, [][]string{{"c01", "c02"}, {"c03", "c04"}, {"c05"}}); diff != "" {
			t.Errorf("pages (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(cursors, []string{"c02", "c04", ""}); diff != "" {
			t.Errorf("cursors (-got +want):\n%s", diff)
		}
		var all server.ConnectionList
		e.okJSON(&all, "", "connections", "list", "--app", "app")
		if diff := cmp.Diff(connectionIDs(all), []string{"c01", "c02", "c03", "c04", "c05"}); diff != "" || all.NextCursor != "" {
			t.Errorf("list without a limit (-got +want):\n%s, next cursor %q", diff, all.NextCursor)
		}

		out, errOut := e.ok("", "connections", "list", "--app", "app", "--limit", "3")
		for _, want := range []string{"ID", "STATE", "c01", "active", "c02", "needs_reauth", "invalid_grant", "spotify-c03"} {
			if !strings.Contains(out, want) {
				t.Errorf("connections list lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "c04") || !strings.Contains(errOut, "--cursor c03") {
			t.Errorf("connections list --limit 3:\nstdout: %s\nstderr: %s", out, errOut)
		}
		if out, _ := e.ok("", "connections", "list", "--app", "app", "--cursor", "c05"); !strings.Contains(out, "no connections after c05") {
			t.Errorf("past the last page: %q", out)
		}
		var empty server.ConnectionList
		e.okJSON(&empty, "", "connections", "list", "--app", "app", "--cursor", "c05")
		if empty.Connections == nil || len(empty.Connections) != 0 {
			t.Errorf("past the last page, --json: %+v", empty)
		}
	})

	t.Run("list by state", func(t *testing.T) {
		e.t = t
		for state, want := range map[string][]string{
			"active": {"c01", "c03", "c05"}, "needs_reauth": {"c02"}, "revoked": {"c04"},
		} {
			var l server.ConnectionList
			e.okJSON(&l, "", "connections", "list", "--app", "app", "--state", state)
			if diff := cmp.Diff(connectionIDs(l), want); diff != "" {
				t.Errorf("--state %s (-got +want):\n%s", state, diff)
			}
		}
		var l server.ConnectionList
		e.okJSON(&l, "", "connections", "list", "--app", "app", "--state", "active", "--limit", "2", "--cursor", "c01")
		if diff := cmp.Diff(connectionIDs(l), []string{"c03", "c05"}); diff != "" || l.NextCursor != "" {
			t.Errorf("--state active after c01 (-got +want):\n%s, cursor %q", diff, l.NextCursor)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		e.t = t
		e.fails(exitUsage, `--state "expired"`, "", "connections", "list", "--app", "app", "--state", "expired")
		e.fails(exitUsage, "--limit 0", "", "connections", "list", "--app", "app", "--limit", "0")
		e.fails(exitUsage, "--limit 1001", "", "connections", "list", "--app", "app", "--limit", "1001")
		e.fails(exitUsage, "invalid argument", "", "connections", "list", "--app", "app", "--limit", "many")
		e.fails(exitUsage, "--app is required", "", "connections", "list")
		e.fails(exitUsage, "--app is required", "", "connections", "get", "c01")
		e.fails(exitUsage, "takes 1 argument", "", "connections", "get", "--app", "app")
		e.fails(exitUsage, "takes 1 argument", "", "connections", "delete", "--app", "app", "c01", "c02")
		e.fails(exitFailure, `no app named "nope"`, "", "connections", "list", "--app", "nope")
		e.fails(exitFailure, `no app named "nope"`, "", "connections", "get", "--app", "nope", "c01")
	})

	t.Run("get", func(t *testing.T) {
		e.t = t
		var v server.ConnectionView
		e.okJSON(&v, "", "connections", "get", "--app", "app", "c02")
		c, err := store.Connection(ctx, spotoken.ConnectionKey{AppID: "app", ID: "c02"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(v, server.NewConnectionView(c)); diff != "" {
			t.Errorf("connections get --json (-got +want):\n%s", diff)
		}
		out, _ := e.ok("", "connections", "get", "--app", "app", "c02")
		for _, want := range []string{"state:", "needs_reauth", "spotify-c02 (User c02)", "user-read-private", "invalid_grant", "grant expires:"} {
			if !strings.Contains(out, want) {
				t.Errorf("connections get lacks %q:\n%s", want, out)
			}
		}
		for _, args := range [][]string{{"connections", "get", "--app", "app", "c01"}, {"connections", "list", "--app", "app"}} {
			for _, asJSON := range []bool{false, true} {
				if asJSON {
					args = append(args, "--json")
				}
				out, errOut := e.ok("", args...)
				if strings.Contains(out+errOut, "access-token-") || strings.Contains(out+errOut, "refresh-token-") {
					t.Errorf("spotoken %v shows a token:\n%s", args, out)
				}
			}
		}
		e.fails(exitFailure, `app app has no connection "c99"`, "", "connections", "get", "--app", "app", "c99")
		e.fails(exitFailure, `app app has no connection "c00"`, "", "connections", "get", "--app", "app", "c00") // another app's
	})

	t.Run("delete", func(t *testing.T) {
		e.t = t
		out, _ := e.ok("", "connections", "delete", "--app", "app", "c03")
		for _, want := range []string{"Deleted connection c03 of app app", "no revocation endpoint", "https://www.spotify.com/account/apps/"} {
			if !strings.Contains(out, want) {
				t.Errorf("connections delete lacks %q:\n%s", want, out)
			}
		}
		e.fails(exitFailure, `app app has no connection "c03"`, "", "connections", "get", "--app", "app", "c03")
		e.fails(exitFailure, `app app has no connection "c03"`, "", "connections", "delete", "--app", "app", "c03")
		e.fails(exitFailure, `app app has no connection "c00"`, "", "connections", "delete", "--app", "app", "c00")
		if _, err := store.Connection(ctx, spotoken.ConnectionKey{AppID: "other", ID: "c00"}); err != nil {
			t.Errorf("another app's connection: %v", err)
		}

		var deleted struct {
			App     string `json:"app"`
			ID      string `json:"id"`
			Deleted bool   `json:"deleted"`
		}
		errOut := e.okJSON(&deleted, "", "connections", "delete", "--app", "app", "c05")
		if deleted.App != "app" || deleted.ID != "c05" || !deleted.Deleted || !strings.Contains(errOut, "https://www.spotify.com/account/apps/") {
			t.Errorf("connections delete --json: %+v, stderr %q", deleted, errOut)
		}

		events, err := store.PendingEvents(ctx, time.Now().Add(time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range events {
			var data map[string]any
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatal(err)
			}
			got = append(got, string(ev.Type)+" "+ev.AppID+"/"+ev.ConnectionID+" "+data["connection_id"].(string)+" "+data["reason"].(string))
		}
		if diff := cmp.Diff(got, []string{"connection.revoked app/c03 c03 deleted", "connection.revoked app/c05 c05 deleted"}); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
		var l server.ConnectionList
		e.okJSON(&l, "", "connections", "list", "--app", "app")
		if diff := cmp.Diff(connectionIDs(l), []string{"c01", "c02", "c04"}); diff != "" {
			t.Errorf("list after delete (-got +want):\n%s", diff)
		}
	})
}

// TestAdminBackends runs the admin commands once over each store backend;
// PostgreSQL only when SPOTOKEN_TEST_POSTGRES is set.
func TestAdminBackends(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newAdminEnv(t, backend)
			ctx := context.Background()
			var app createdApp
			e.okJSON(&app, "backend-client-secret\n", "apps", "create", "--name", "app", "--client-id", "cid",
				"--redirect-uri", "https://broker.example/callback", "--scopes", "user-top-read",
				"--client-secret-stdin", "--webhook-url", "https://app.example/hook")
			store := e.open()
			if a, err := store.App(ctx, "app"); err != nil || a.ClientSecret.Reveal() != "backend-client-secret" || a.WebhookSecret.Reveal() != app.WebhookSecret {
				t.Fatalf("stored app: %v", err)
			}
			if diff := cmp.Diff(e.appNames(), []string{"app"}); diff != "" {
				t.Errorf("apps (-got +want):\n%s", diff)
			}
			e.fails(exitUsage, "unknown Spotify scope", "", "apps", "create", "--name", "x", "--client-id", "c",
				"--redirect-uri", "https://b.example/cb", "--scopes", "nope")

			var key createdKey
			e.okJSON(&key, "", "apikeys", "create", "--app", "app", "--name", "svc")
			if k, err := store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(key.Key))); err != nil || k.ID != key.ID {
				t.Errorf("stored key: %v", err)
			}
			e.ok("", "apikeys", "revoke", "--app", "app", key.ID)
			var keys []apiKeyView
			e.okJSON(&keys, "", "apikeys", "list", "--app", "app")
			if len(keys) != 1 || !keys[0].Revoked {
				t.Errorf("keys after revoke: %+v", keys)
			}

			seedConnections(t, store, "app", map[string]spotoken.State{"a": spotoken.StateActive, "b": spotoken.StateNeedsReauth, "c": spotoken.StateActive})
			var l server.ConnectionList
			e.okJSON(&l, "", "connections", "list", "--app", "app", "--state", "active", "--limit", "1")
			if diff := cmp.Diff(connectionIDs(l), []string{"a"}); diff != "" || l.NextCursor != "a" {
				t.Errorf("first page (-got +want):\n%s, cursor %q", diff, l.NextCursor)
			}
			var v server.ConnectionView
			e.okJSON(&v, "", "connections", "get", "--app", "app", "b")
			if v.ID != "b" || v.State != spotoken.StateNeedsReauth {
				t.Errorf("connections get: %+v", v)
			}
			e.ok("", "connections", "delete", "--app", "app", "a")
			e.fails(exitFailure, "has no connection", "", "connections", "get", "--app", "app", "a")
			events, err := store.PendingEvents(ctx, time.Now().Add(time.Hour), 10)
			if err != nil || len(events) != 1 || events[0].Type != spotoken.EventConnectionRevoked || events[0].ConnectionID != "a" {
				t.Errorf("events: %v %+v", err, events)
			}

			out, _ := e.ok("", "apps", "delete", "app")
			if !strings.Contains(out, "1 API key and 2 connections") {
				t.Errorf("apps delete: %q", out)
			}
			if diff := cmp.Diff(e.appNames(), []string{}); diff != "" {
				t.Errorf("apps after delete (-got +want):\n%s", diff)
			}
		})
	}
}

// TestConnectionsSortByGrantExpiry: --sort grant_expires_at lists the
// grants that expire soonest first, across pages of the store, and shows
// the expiry in the table.
func TestConnectionsSortByGrantExpiry(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("app")
	store := e.open()
	ctx := context.Background()
	seedConnections(t, store, "app", map[string]spotoken.State{
		"c01": spotoken.StateActive, "c02": spotoken.StateActive, "c03": spotoken.StateNeedsReauth,
		"c04": spotoken.StateActive, "c05": spotoken.StateActive,
	})
	base := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	for id, days := range map[string]int{"c01": 30, "c02": 3, "c03": 1, "c04": 90, "c05": -1} {
		_, err := store.UpdateConnection(ctx, spotoken.ConnectionKey{AppID: "app", ID: id}, func(c *spotoken.Connection) ([]spotoken.Event, error) {
			if days < 0 {
				c.GrantExpiresAt = time.Time{} // unknown: listed last
			} else {
				c.GrantExpiresAt = base.Add(time.Duration(days) * 24 * time.Hour)
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var l server.ConnectionList
	e.okJSON(&l, "", "connections", "list", "--app", "app", "--sort", "grant_expires_at")
	if diff := cmp.Diff(connectionIDs(l), []string{"c03", "c02", "c01", "c04", "c05"}); diff != "" {
		t.Errorf("sorted by grant expiry (-got +want):\n%s", diff)
	}
	e.okJSON(&l, "", "connections", "list", "--app", "app", "--sort", "grant_expires_at", "--state", "active", "--limit", "2")
	if diff := cmp.Diff(connectionIDs(l), []string{"c02", "c01"}); diff != "" || l.NextCursor != "" {
		t.Errorf("two soonest active (-got +want):\n%s; next cursor %q", diff, l.NextCursor)
	}
	out, _ := e.ok("", "connections", "list", "--app", "app", "--sort", "grant_expires_at", "--limit", "1")
	if !strings.Contains(out, "GRANT EXPIRES") || !strings.Contains(out, "c03") || !strings.Contains(out, "2027-03-02") {
		t.Errorf("table lacks the grant expiry:\n%s", out)
	}
	e.fails(exitUsage, `--sort "expiry"`, "", "connections", "list", "--app", "app", "--sort", "expiry")
	e.fails(exitUsage, "does not go with --sort grant_expires_at", "", "connections", "list", "--app", "app", "--sort", "grant_expires_at", "--cursor", "c01")
}
