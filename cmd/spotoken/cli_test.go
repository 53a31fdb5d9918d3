package main

// The transcripts of the personal commands (login, token, status, logout)
// under testdata/script, run by testscript. Each script runs spotoken as a
// program (the test binary re-executed under that name by testscript.Main,
// see TestMain) against an emulator that the script starts in the test
// process with the "emulator" command. A login's browser is the program
// spotoken-browse, which login starts through $BROWSER: it follows the
// authorization URL through the emulator's consent (auto-approved, or
// answered with $BROWSE_ACTION) back to login's loopback redirect.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/client/clienttest"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// The clients the script emulator registers: a public one (PKCE) and a
// confidential one, both with the port-less loopback redirect URI.
const (
	scriptClientID     = "cli-client"
	scriptSecretClient = "cli-secret-client"
	scriptClientSecret = "cs-0123456789abcdef-secret"
)

// runFunc is a testscript.TestingM.
type runFunc func() int

func (f runFunc) Run() int { return f() }

// scriptCommands are the programs the scripts run, by name.
func scriptCommands() map[string]func() {
	return map[string]func(){
		"spotoken":        main,
		"spotoken-browse": browseMain,
	}
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Values["t"] = env.T().(testing.TB)
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("XDG_DATA_HOME", filepath.Join(env.WorkDir, "data"))
			env.Setenv("DB_DIR", filepath.Join(env.WorkDir, "data", "spotoken"))
			env.Setenv("CLIENT_SECRET", scriptClientSecret)
			env.Setenv("SECRET_CLIENT_ID", scriptSecretClient)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"emulator":   cmdEmulator,
			"emuctl":     cmdEmuctl,
			"broker":     cmdBroker,
			"brokerctl":  cmdBrokerctl,
			"envstdout":  cmdEnvStdout,
			"nosecretin": cmdNoSecretIn,
			"exitcode":   cmdExitCode,
			"ageprofile": cmdAgeProfile,
		},
	})
}

// cmdEmulator starts an emulator for the script:
//
//	emulator [-auto USER] [-token-ttl D]
//
// and sets EMU_URL, SPOTOKEN_ACCOUNTS_URL, SPOTOKEN_API_URL and
// SPOTIFY_CLIENT_ID (the public client). Without -auto, consent is answered
// on the emulator's page by spotoken-browse.
func cmdEmulator(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! emulator")
	}
	cfg := emulator.Config{Clients: []emulator.Client{
		{ID: scriptClientID, RedirectURIs: []string{"http://127.0.0.1/callback"}},
		{ID: scriptSecretClient, Secret: scriptClientSecret, RedirectURIs: []string{"http://127.0.0.1/callback"}},
	}}
	for len(args) > 0 {
		if len(args) < 2 {
			ts.Fatalf("usage: emulator [-auto USER] [-token-ttl D]")
		}
		switch args[0] {
		case "-auto":
			cfg.AutoApprove = args[1]
		case "-token-ttl":
			d, err := time.ParseDuration(args[1])
			ts.Check(err)
			cfg.TokenTTL = d
		default:
			ts.Fatalf("emulator: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	emu, err := emulator.New(cfg)
	ts.Check(err)
	srv := httptest.NewServer(emu)
	ts.Defer(srv.Close)
	emulators.Store(ts, emu)
	ts.Defer(func() { emulators.Delete(ts) })
	ts.Setenv("EMU_URL", srv.URL)
	ts.Setenv("SPOTOKEN_ACCOUNTS_URL", srv.URL)
	ts.Setenv("SPOTOKEN_API_URL", srv.URL)
	ts.Setenv("SPOTIFY_CLIENT_ID", scriptClientID)
}

// cmdEmuctl acts on the script's emulator:
//
//	emuctl stats              prints the counters as JSON
//	emuctl revoke USER CLIENT removes USER's grant to CLIENT, as on Spotify's account page
//	emuctl fault token STATUS makes every token request answer STATUS (until cleared)
//	emuctl clear              clears the faults
func cmdEmuctl(ts *testscript.TestScript, neg bool, args []string) {
	v, ok := emulators.Load(ts)
	if !ok {
		ts.Fatalf("emuctl: start an emulator first")
	}
	emu := v.(*emulator.Emulator)
	switch {
	case len(args) == 1 && args[0] == "stats":
		b, err := json.Marshal(emu.Stats())
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "%s\n", b)
	case len(args) == 3 && args[0] == "revoke":
		ts.Check(emu.RevokeGrant(args[1], args[2]))
	case len(args) == 3 && args[0] == "fault" && args[1] == "token":
		status, err := strconv.Atoi(args[2])
		ts.Check(err)
		ts.Check(emu.SetFaults(emulator.Faults{TokenStatus: status}))
	case len(args) == 1 && args[0] == "clear":
		emu.ClearFaults()
	default:
		ts.Fatalf("usage: emuctl stats | emuctl revoke USER CLIENT | emuctl fault token STATUS | emuctl clear")
	}
}

// cmdBroker starts a spotoken broker in front of its own emulator, with
// connection user-42 connected, and sets BROKER_URL and SPOTOKEN_API_KEY.
func cmdBroker(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: broker")
	}
	t := ts.Value("t").(testing.TB)
	b := clienttest.NewBroker(t)
	b.Connect(t, "user-42")
	ts.Setenv("BROKER_URL", b.URL)
	ts.Setenv("SPOTOKEN_API_KEY", b.APIKey)
	brokers.Store(ts, b)
}

var brokers sync.Map // *testscript.TestScript → *clienttest.Broker

// cmdBrokerctl acts on the script's broker: "brokerctl revoke" withdraws
// the user's grant at its emulator and lets two hours pass, so the next
// token request finds the grant refused.
func cmdBrokerctl(ts *testscript.TestScript, neg bool, args []string) {
	v, ok := brokers.Load(ts)
	if neg || !ok || len(args) != 1 || args[0] != "revoke" {
		ts.Fatalf("usage: brokerctl revoke (after broker)")
	}
	b := v.(*clienttest.Broker)
	b.RevokeGrant(ts.Value("t").(testing.TB))
	b.Advance(2 * time.Hour)
}

// cmdAgeProfile makes the stored access token of a profile in the script's
// default database expire D from now, as if it had aged, with no waiting:
// ageprofile PROFILE D.
func cmdAgeProfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: ageprofile PROFILE DURATION")
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	dir := ts.Getenv("DB_DIR")
	keys, err := seal.LoadKeyFile(filepath.Join(dir, "spotoken.keys"))
	ts.Check(err)
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "spotoken.db"), Keys: keys})
	ts.Check(err)
	defer store.Close()
	_, err = store.UpdateConnection(ctx, profileKey(args[0]), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.Token.Expiry = time.Now().Add(d)
		return nil, nil
	})
	ts.Check(err)
}

// cmdExitCode runs a program, like exec, and fails unless it exits with
// status N: exitcode N PROGRAM ARGS...
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROGRAM ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdEnvStdout sets the variable NAME to the last command's standard
// output, without its trailing newline: envstdout NAME.
func cmdEnvStdout(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: envstdout NAME")
	}
	v := strings.TrimSpace(ts.ReadFile("stdout"))
	if v == "" {
		ts.Fatalf("envstdout: the last command printed nothing")
	}
	ts.Setenv(args[0], v)
}

// cmdNoSecretIn fails if any file under DIR holds VALUE:
// nosecretin DIR VALUE...
func cmdNoSecretIn(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: nosecretin DIR VALUE...")
	}
	n := 0
	ts.Check(filepath.WalkDir(ts.MkAbs(args[0]), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		for _, v := range args[1:] {
			if v == "" {
				return fmt.Errorf("nosecretin: empty value")
			}
			if bytes.Contains(data, []byte(v)) {
				return fmt.Errorf("%s holds a secret in plaintext", path)
			}
		}
		return nil
	}))
	if n == 0 {
		ts.Fatalf("nosecretin: no files under %s", args[0])
	}
}

// emulators maps a running script to its emulator.
var emulators sync.Map

// browseMain is the program spotoken-browse URL, the scripts' browser: it
// follows URL's redirects with a cookie jar and, on the emulator's consent
// page, answers $BROWSE_ACTION (agree, the default, or cancel) as user
// $BROWSE_USER (default alice). It prints the status and the message of the
// page it ends on.
func browseMain() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: spotoken-browse URL")
		os.Exit(2)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: time.Minute}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, os.Args[1], nil)
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spotoken-browse:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := consentRequest.FindSubmatch(body); m != nil {
		action := os.Getenv("BROWSE_ACTION")
		if action == "" {
			action = "agree"
		}
		user := os.Getenv("BROWSE_USER")
		if user == "" {
			user = "alice"
		}
		form := url.Values{"request": {string(m[1])}, "action": {action}, "new_user": {user}}
		for _, s := range consentScope.FindAllSubmatch(body, -1) {
			form.Add("scope", string(s[1]))
		}
		consent := resp.Request.URL.ResolveReference(&url.URL{Path: "/authorize/consent"})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, consent.String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err = hc.Do(req); err != nil {
			fmt.Fprintln(os.Stderr, "spotoken-browse:", err)
			os.Exit(1)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	fmt.Printf("%d %s\n", resp.StatusCode, body)
}

var (
	consentRequest = regexp.MustCompile(`name="request" value="([^"]+)"`)
	consentScope   = regexp.MustCompile(`name="scope" value="([^"]+)"`)
)

// cancelOnWrite is a standard error that cancels a context once the
// program has written want to it.
type cancelOnWrite struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   string
	cancel context.CancelFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.cancel()
	}
	return len(p), nil
}

func (w *cancelOnWrite) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestLoginInterrupted: Ctrl-C (the context cancelled) while login waits
// for the browser stores nothing.
func TestLoginInterrupted(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "spotoken.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &cancelOnWrite{want: "Waiting for the login", cancel: cancel}
	var stdout bytes.Buffer
	code := Run(ctx, []string{"login", "--no-browser", "--client-id", "cli-client", "--scopes", "none", "--db", db,
		"--accounts-url", "http://127.0.0.1:1"}, strings.NewReader(""), &stdout, stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "login cancelled; nothing was stored") {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailure, stderr)
	}
	stdout.Reset()
	var errb bytes.Buffer
	if code := Run(context.Background(), []string{"status", "--db", db, "--json"}, strings.NewReader(""), &stdout, &errb); code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "[]" {
		t.Errorf("status after an interrupted login = %s, want []", got)
	}
}
