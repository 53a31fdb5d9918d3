package main

// The harness for end-to-end tests of the real spotoken binary: it is built
// once per test run, and each process it starts is stopped with SIGTERM when
// its test ends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// spotokenBinary builds the spotoken command once per test run and returns
// the path of the executable. The build goes to a directory removed when the
// test binary exits.
func spotokenBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test of the built binary; skipped with -short")
	}
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "spotoken-e2e-bin-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "spotoken")
		cmd := exec.Command("go", "build", "-o", binaryPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binaryErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// proc is a running spotoken process.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	URL    string      // the first line of its standard output
	Stdout *syncBuffer // everything after the first line
	Stderr *syncBuffer // its JSON logs
	done   chan struct{}
	code   int
	once   sync.Once
}

// startSpotoken runs the binary with args and the extra environment
// variables env ("K=V"), waits for the first line of standard output (a long
// running command's base URL) and returns the process. It is stopped with
// SIGTERM at the end of the test unless Stop was called.
func startSpotoken(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	bin := spotokenBinary(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		first <- strings.TrimSpace(line)
		io.Copy(p.Stdout, r)
	}()
	go func() {
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			p.code = exit.ExitCode()
		default:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	select {
	case p.URL = <-first:
	case <-p.done:
		t.Fatalf("spotoken %s exited with %d before printing its URL; stderr:\n%s", strings.Join(args, " "), p.code, p.Stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("spotoken %s printed nothing within a minute; stderr:\n%s", strings.Join(args, " "), p.Stderr)
	}
	if p.URL == "" {
		<-p.done
		t.Fatalf("spotoken %s printed no URL (exit %d); stderr:\n%s", strings.Join(args, " "), p.code, p.Stderr)
	}
	return p
}

// Stop sends SIGTERM, waits up to 30 seconds for the process to exit and
// returns its exit status (-1 when it had to be killed).
func (p *proc) Stop() int {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			p.t.Errorf("spotoken did not stop within 30s of SIGTERM; stderr:\n%s", p.Stderr)
			p.code = -1
		}
	})
	return p.code
}

// runSpotoken runs the binary to completion with args, env and stdin, and
// returns its standard output, standard error and exit status.
func runSpotoken(t testing.TB, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, spotokenBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("spotoken %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func TestMain(m *testing.M) {
	// Started under the name of a script's program (cli_test.go), the test
	// binary runs that program; else it runs the tests.
	testscript.Main(runFunc(func() int {
		code := m.Run()
		if binaryPath != "" {
			os.RemoveAll(filepath.Dir(binaryPath))
		}
		return code
	}), scriptCommands())
}

// TestBinaryServeEmulatorStartsAndStops is the smallest end-to-end check:
// the built binary serves with the emulator, answers /healthz, and exits 0
// on SIGTERM after logging that it stopped.
func TestBinaryServeEmulatorStartsAndStops(t *testing.T) {
	dir := t.TempDir()
	// No --key-file: the default one under the XDG data dir is created.
	p := startSpotoken(t, []string{"XDG_DATA_HOME=" + dir}, "serve", "--emulator", "--addr", "127.0.0.1:0",
		"--db", filepath.Join(dir, "spotoken.db"))
	resp, err := httpGet(p.URL + "/healthz")
	if err != nil || resp != 200 {
		t.Fatalf("GET /healthz: %d %v", resp, err)
	}
	if code := p.Stop(); code != 0 {
		t.Errorf("exit status after SIGTERM = %d, want 0; stderr:\n%s", code, p.Stderr)
	}
	if !strings.Contains(p.Stderr.String(), `"msg":"stopped"`) {
		t.Errorf("stderr lacks the stopped line:\n%s", p.Stderr)
	}
	if !strings.Contains(p.Stdout.String(), "export SPOTOKEN_API_KEY=sk_") {
		t.Errorf("banner lacks the API key line:\n%s", p.Stdout)
	}
}

// httpGet returns the status code of a GET of url.
func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestBinaryServeJSON: with --json, serve's first stdout line is one JSON
// object with the URLs and, with --emulator, the new API key, which works.
func TestBinaryServeJSON(t *testing.T) {
	dir := t.TempDir()
	p := startSpotoken(t, []string{"XDG_DATA_HOME=" + dir}, "serve", "--emulator", "--json", "--addr", "127.0.0.1:0",
		"--db", filepath.Join(dir, "spotoken.db"))
	var info struct {
		URL, CallbackURL, EmulatorURL, App, APIKey string
	}
	var raw map[string]string
	if err := json.Unmarshal([]byte(p.URL), &raw); err != nil {
		t.Fatalf("first line %q is not a JSON object: %v", p.URL, err)
	}
	info.URL, info.CallbackURL, info.EmulatorURL, info.App, info.APIKey = raw["url"], raw["callback_url"], raw["emulator_url"], raw["app"], raw["api_key"]
	if !strings.HasPrefix(info.URL, "http://127.0.0.1:") || info.CallbackURL != info.URL+"/callback" ||
		!strings.HasPrefix(info.EmulatorURL, "http://127.0.0.1:") || info.App != "demo" || !strings.HasPrefix(info.APIKey, "sk_") || len(raw) != 5 {
		t.Fatalf("serve --json printed %s", p.URL)
	}
	req, _ := http.NewRequest("GET", info.URL+"/v1/connections", nil)
	req.Header.Set("Authorization", "Bearer "+info.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/connections with the printed key: %d", resp.StatusCode)
	}
	if code := p.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if out := p.Stdout.String(); out != "" {
		t.Errorf("serve --json printed more than its JSON line:\n%s", out)
	}
}
