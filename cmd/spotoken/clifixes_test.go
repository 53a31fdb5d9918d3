package main

// Tests of the command line's small promises: version, errors as JSON under
// --json, advice that never creates an empty database at a mistyped path,
// and next-step hints that reach the same store.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/seal"
)

// run runs the program in-process with args and returns its output and exit status.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestVersionFromBuildInfo(t *testing.T) {
	when := time.Date(2026, 7, 1, 12, 30, 0, 0, time.UTC)
	tests := []struct {
		name  string
		bi    *debug.BuildInfo
		want  versionInfo
		short string
	}{
		{"no build info", nil, versionInfo{Version: "(unknown)"}, "spotoken (unknown)"},
		{"go install @version", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.4.0"}},
			versionInfo{Version: "v1.4.0", GoVersion: "go1.26.1"}, "spotoken v1.4.0 go1.26.1"},
		{"built in a checkout", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-07-01T12:30:00Z"}, {Key: "vcs.modified", Value: "true"},
		}}, versionInfo{Version: "(devel)", Revision: "0123456789abcdef0123456789abcdef01234567", Time: &when, Modified: true, GoVersion: "go1.26.1"},
			"spotoken (devel) (0123456789ab, 2026-07-01T12:30:00Z, modified) go1.26.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := versionFrom(tt.bi)
			tt.want.Platform = got.Platform
			if tt.want.GoVersion == "" {
				tt.want.GoVersion = got.GoVersion
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("versionFrom (-got +want):\n%s", diff)
			}
			if s := got.short(); !strings.HasPrefix(s, tt.short) {
				t.Errorf("short() = %q, want it to start with %q", s, tt.short)
			}
		})
	}
}

// TestBinaryVersion: the built binary reports what the Go toolchain reads
// from it ('go version -m'): its module version, Go version and, when the
// build recorded one, the VCS revision.
func TestBinaryVersion(t *testing.T) {
	bin := spotokenBinary(t)
	out, errOut, code := runSpotoken(t, nil, "", "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d: %s", code, errOut)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version --json printed %q: %v", out, err)
	}
	m, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(string(m), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			want["version"] = f[2]
		case len(f) == 2 && strings.HasSuffix(f[0], ":"):
			want["go_version"] = f[1]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			want["revision"] = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	for k, w := range want {
		if got, _ := v[k].(string); got != w {
			t.Errorf("version --json %s = %q, want %q (from go version -m)", k, got, w)
		}
	}
	if _, ok := want["revision"]; !ok {
		if _, has := v["revision"]; has {
			t.Errorf("version --json shows a revision the build did not record: %s", out)
		}
	}
	text, _, code := runSpotoken(t, nil, "", "version")
	if code != 0 || !strings.HasPrefix(text, "spotoken "+want["version"]) {
		t.Errorf("version printed %q (exit %d), want it to start with spotoken %s", text, code, want["version"])
	}
}

// TestErrorsAsJSON: under --json every failure is one line of JSON on
// standard error, with the exit status the text form has, and nothing on
// standard output.
func TestErrorsAsJSON(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir) // no default database
	missing := filepath.Join(dir, "nope", "x.db")
	tests := []struct {
		name     string
		args     []string
		code     int
		errCode  string
		contains string
	}{
		{"unknown flag", []string{"apps", "list", "--bogus", "--json"}, exitUsage, "usage_error", "unknown flag: --bogus"},
		{"unknown command, --json first", []string{"--json", "nope"}, exitUsage, "usage_error", `unknown command "nope"`},
		{"usage error", []string{"apps", "create", "--json"}, exitUsage, "usage_error", "--name is required"},
		{"no such profile", []string{"logout", "--json", "--profile", "nope"}, exitNeedsLogin, "needs_login", `no profile "nope"`},
		{"a --db that is not there", []string{"token", "--json", "--db", missing}, exitFailure, "failed", "no database at " + missing},
		{"failure", []string{"apps", "list", "--json", "--db", missing}, exitFailure, "failed", "no database at " + missing},
		{"--json=true", []string{"apps", "list", "--json=true", "--db", missing}, exitFailure, "failed", "no database at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", tt.args...)
			if code != tt.code || stdout != "" {
				t.Fatalf("exit %d, want %d; stdout %q", code, tt.code, stdout)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
			var got cliError
			dec := json.NewDecoder(strings.NewReader(stderr))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("stderr %q is not a JSON error: %v", stderr, err)
			}
			if got.Error != tt.errCode || got.ExitStatus != tt.code || !strings.Contains(got.Description, tt.contains) {
				t.Errorf("JSON error %+v, want code %q, exit_status %d, a description with %q", got, tt.errCode, tt.code, tt.contains)
			}
		})
	}
	// Without --json (and with --json=false) the same failure is text.
	for _, args := range [][]string{{"apps", "list", "--db", missing}, {"apps", "list", "--json=false", "--db", missing}} {
		if _, stderr, _ := run(t, "", args...); !strings.HasPrefix(stderr, "spotoken: no database at") {
			t.Errorf("%v: stderr %q, want text", args, stderr)
		}
	}
}

// TestMissingDatabaseAdvice: a --db that names no database is answered
// with advice to check the path, which creates nothing, for every command
// that opens an existing database; the default location gets the advice
// to create it.
func TestMissingDatabaseAdvice(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	if _, err := seal.GenerateKeyFile(keys); err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{filepath.Join(dir, "no", "such", "dir", "x.db"), filepath.Join(dir, "typo.db")} {
		for _, args := range [][]string{
			{"apps", "list"}, {"apps", "delete", "a"}, {"apikeys", "list", "--app", "a"}, {"apikeys", "create", "--app", "a"},
			{"connections", "list", "--app", "a"}, {"keys", "rotate"}, {"apps", "list", "--key-file", keys},
			{"token"}, {"status"}, {"status", "--profile", "p"}, {"logout"},
		} {
			args = append(args, "--db", db)
			_, stderr, code := run(t, "", args...)
			if code != exitFailure || !strings.Contains(stderr, "no database at "+db) || !strings.Contains(stderr, "check --db") ||
				!strings.Contains(stderr, "nothing was created") {
				t.Errorf("spotoken %s: exit %d, stderr %q; want exit 1 and advice to check --db", strings.Join(args, " "), code, stderr)
			}
			for _, bad := range []string{"serve", "key file"} {
				if strings.Contains(stderr, bad) {
					t.Errorf("spotoken %s: the advice mentions %q: %s", strings.Join(args, " "), bad, stderr)
				}
			}
		}
		if strings.Contains(db, "no/such") && !strings.Contains(mustRun(t, "apps", "list", "--db", db), "there is no directory "+filepath.Dir(db)) {
			t.Errorf("the advice for %s does not say its directory is missing", db)
		}
	}
	var created []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if path != dir && path != keys {
			created = append(created, path)
		}
		return nil
	})
	if len(created) > 0 {
		t.Errorf("the commands created %v", created)
	}

	// The default database, not there yet: create it, says the advice.
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "xdg"))
	_, stderr, code := run(t, "", "apps", "list")
	if code != exitFailure || !strings.Contains(stderr, "no database yet at "+filepath.Join(dir, "xdg", "spotoken", "spotoken.db")+", the default") ||
		!strings.Contains(stderr, "spotoken apps create") {
		t.Errorf("apps list with no default database: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "xdg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("apps list created the data directory: %v", err)
	}
}

// mustRun runs the program and returns its standard error, whatever the exit.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	_, stderr, _ := run(t, "", args...)
	return stderr
}

// TestAppsCreateHintReachesTheStore: the next step 'apps create' suggests
// names the database and key file it was given, so it runs against the
// same store as printed; a PostgreSQL password is never printed.
func TestAppsCreateHintReachesTheStore(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	_, stderr := e.ok("", "apps", "create", "--name", "a", "--client-id", "c", "--redirect-uri", "https://b.example/callback")
	want := "spotoken apikeys create --app a --db " + e.db + " --key-file " + e.keyFile
	if !strings.Contains(stderr, want) {
		t.Fatalf("apps create hint:\n%s\nwant %q", stderr, want)
	}
	// Run the hint as printed: it reaches the app.
	args := strings.Fields(strings.TrimPrefix(want, "spotoken "))
	if stdout, stderr, code := run(t, "", args...); code != exitOK || !strings.HasPrefix(stdout, "sk_") {
		t.Errorf("the hinted command: exit %d\n%s%s", code, stdout, stderr)
	}

	// From the environment, the flags are not repeated: the next command
	// reads the same variables.
	t.Setenv("SPOTOKEN_DB", e.db)
	t.Setenv("SPOTOKEN_KEY_FILE", e.keyFile)
	_, stderr, code := run(t, "", "apps", "create", "--name", "b", "--client-id", "c", "--redirect-uri", "https://b.example/callback")
	if code != exitOK || !strings.Contains(stderr, "spotoken apikeys create --app b\n") {
		t.Errorf("apps create with SPOTOKEN_DB: exit %d, hint:\n%s", code, stderr)
	}
}

func TestAppsCreateHintPostgresHidesPassword(t *testing.T) {
	e := newAdminEnv(t, "postgres")
	// The test server trusts every connection, so a password is accepted
	// and ignored: enough to see that it is never printed.
	u, err := url.Parse(e.db)
	if err != nil {
		t.Fatal(err)
	}
	const password = "hunter2-not-to-be-printed"
	u.User = url.UserPassword(u.User.Username(), password)
	e.db = u.String()
	stdout, stderr := e.ok("", "apps", "create", "--name", "a", "--client-id", "c", "--redirect-uri", "https://b.example/callback")
	if strings.Contains(stdout+stderr, password) {
		t.Fatalf("apps create printed the database password:\n%s%s", stdout, stderr)
	}
	u.User = url.UserPassword(u.User.Username(), "xxxxx")
	want := "spotoken apikeys create --app a --db '" + u.String() + "' --key-file " + e.keyFile
	if !strings.Contains(stderr, want) {
		t.Errorf("apps create hint:\n%s\nwant %q", stderr, want)
	}
	// A password in the query is hidden too.
	if got := redactDSN(pgtest.WithParam(u.String(), "password", password)); strings.Contains(got, password) {
		t.Errorf("redactDSN left the query's password: %s", got)
	}
}

// TestTokenServerMinTTL: token --server never prints a token valid for less
// than --min-ttl, though the broker serves one while it cannot refresh.
func TestTokenServerMinTTL(t *testing.T) {
	const access = "BQ-short-lived-access-token"
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/connections/u1/token" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "Bearer",
			"expires_at": time.Now().Add(4 * time.Minute).UTC(), "scope": "user-read-email"})
	}))
	defer broker.Close()
	t.Setenv(envAPIKey, "sk_test")

	stdout, stderr, code := run(t, "", "token", "--server", broker.URL, "--connection", "u1", "--min-ttl", "15m")
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, `the broker has no token for connection "u1" valid for --min-ttl 15m0s: the one it has expires in `) {
		t.Errorf("token --min-ttl 15m: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if strings.Contains(stderr, access) {
		t.Errorf("the error shows the token: %s", stderr)
	}
	if stdout, _, code := run(t, "", "token", "--server", broker.URL, "--connection", "u1", "--min-ttl", "1m"); code != exitOK || stdout != access+"\n" {
		t.Errorf("token --min-ttl 1m: exit %d, stdout %q", code, stdout)
	}
}
