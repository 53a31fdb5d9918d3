package refresh_test

// Helpers shared by the tests that run engines in child processes
// (multiprocess_test.go, crash_test.go): the child side of the re-exec, a
// line protocol over the child's stdin and stdout, and what the children
// need to find the emulator, the store and the connection.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/seal"
)

// child is this test binary re-executed to run one test function in its own
// OS process. The parent writes lines to its stdin and reads its stdout line
// by line; its stderr is kept for the failure message.
type child struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout, a line at a time; closed at EOF
	stderr *syncBuffer

	mu      sync.Mutex
	seen    []string // every stdout line so far, for failure messages
	waited  bool
	waitErr error
}

// childTimeout bounds every wait for a child, so that a stuck child fails
// the test instead of hanging it. It is never used to synchronize.
const childTimeout = 60 * time.Second

// startChild runs the test function test in a new process of this binary,
// with env added to the environment. The child is killed, if still running,
// when the test ends.
func startChild(t *testing.T, name, test string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), env...)
	c := &child{t: t, name: name, cmd: cmd, lines: make(chan string, 1024), stderr: &syncBuffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.mu.Lock()
			c.seen = append(c.seen, sc.Text())
			c.mu.Unlock()
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		if !c.isWaited() {
			c.cmd.Process.Kill()
			c.wait()
		}
	})
	return c
}

func (c *child) isWaited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waited
}

// wait reaps the process once stdout is drained, and returns its exit error.
func (c *child) wait() error {
	for range c.lines { // os/exec: read stdout to EOF before Wait
	}
	err := c.cmd.Wait()
	c.mu.Lock()
	c.waited, c.waitErr = true, err
	c.mu.Unlock()
	return err
}

// diag describes the child for a failure message: its last stdout lines and
// its stderr.
func (c *child) diag() string {
	c.mu.Lock()
	seen := c.seen
	if len(seen) > 20 {
		seen = seen[len(seen)-20:]
	}
	out := strings.Join(seen, "\n  ")
	c.mu.Unlock()
	return fmt.Sprintf("%s stdout (last lines):\n  %s\n%s stderr:\n%s", c.name, out, c.name, c.stderr.String())
}

// send writes one line to the child's stdin.
func (c *child) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.stdin, line); err != nil {
		c.t.Fatalf("%s: write %q: %v\n%s", c.name, line, err, c.diag())
	}
}

// next returns the child's next stdout line; the test fails if the child
// exits or stays silent for childTimeout.
func (c *child) next() string {
	c.t.Helper()
	timer := time.NewTimer(childTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			err := c.wait()
			c.t.Fatalf("%s exited (%v) when a line was expected\n%s", c.name, err, c.diag())
		}
		return line
	case <-timer.C:
		c.t.Fatalf("%s: no line for %v\n%s", c.name, childTimeout, c.diag())
	}
	panic("unreachable")
}

// expect reads lines until one starts with prefix, and returns the rest of
// it. Other lines are skipped (the testing package may print some).
func (c *child) expect(prefix string) string {
	c.t.Helper()
	for {
		if rest, ok := strings.CutPrefix(c.next(), prefix); ok {
			return rest
		}
	}
}

// finish closes the child's stdin, which tells it to exit, and waits for it.
// It returns the stdout lines the child wrote after the last one read; the
// test fails with the child's stderr if it did not exit cleanly.
func (c *child) finish() []string {
	c.t.Helper()
	c.stdin.Close()
	var rest []string
	timer := time.NewTimer(childTimeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if ok {
				rest = append(rest, line)
				continue
			}
			if err := c.wait(); err != nil {
				c.t.Errorf("%s failed: %v\n%s", c.name, err, c.diag())
			}
			return rest
		case <-timer.C:
			c.t.Fatalf("%s did not exit within %v of its stdin closing\n%s", c.name, childTimeout, c.diag())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// childDie ends a child process with a message on stderr, which the parent
// puts in its failure message.
func childDie(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

// newKeyMaterial returns fresh key material, hex-encoded for a child's
// environment: every process must seal and open with the same key ring.
func newKeyMaterial(t *testing.T) string {
	t.Helper()
	var m [32]byte
	rand.Read(m[:])
	return hex.EncodeToString(m[:])
}

// keyRingFromHex is the key ring of one version-1 key with material hexKey.
func keyRingFromHex(hexKey string) (*seal.KeyRing, error) {
	b, err := hex.DecodeString(hexKey)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("key material: want 64 hex digits (%v)", err)
	}
	var k seal.Key
	k.Version = 1
	copy(k.Material[:], b)
	return seal.NewKeyRing([]seal.Key{k}, 1)
}

// parseConnectionKey parses what ConnectionKey.String prints: APP/ID.
func parseConnectionKey(s string) (spotoken.ConnectionKey, error) {
	app, id, ok := strings.Cut(s, "/")
	if !ok || app == "" || id == "" {
		return spotoken.ConnectionKey{}, fmt.Errorf("connection key %q: want APP/ID", s)
	}
	return spotoken.ConnectionKey{AppID: app, ID: id}, nil
}

// emulatorNow reads the emulator's virtual clock from GET /_emulator/clock.
func emulatorNow(ctx context.Context, hc *http.Client, base string) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_emulator/clock", nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("emulator clock: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Now time.Time `json:"now"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<10)).Decode(&body)
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10)) // to EOF, so the connection is kept for the next request
	if err != nil || resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("emulator clock: status %d, %v", resp.StatusCode, err)
	}
	return body.Now, nil
}

// tokenSum is what processes compare instead of the token itself.
func tokenSum(s spotoken.Secret) string {
	sum := sha256.Sum256([]byte(s.Reveal()))
	return hex.EncodeToString(sum[:])
}

// connectionCreator is the part of a store grantConnection needs.
type connectionCreator interface {
	CreateConnection(ctx context.Context, c *spotoken.Connection, events ...spotoken.Event) error
}

// grantConnection runs the PKCE flow for user alice at the emulator at base
// (which auto-approves her) and stores the grant as connection id of appID.
func grantConnection(t *testing.T, base string, now func() time.Time, store connectionCreator, id string) spotoken.ConnectionKey {
	t.Helper()
	ac := accounts.New(accounts.Config{ClientID: clientID, AuthURL: base + "/authorize", TokenURL: base + "/api/token", Now: now})
	verifier := accounts.GenerateVerifier()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(ac.AuthCodeURL("s", redirect, nil, verifier, false))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	g, err := ac.Exchange(ctx, loc.Query().Get("code"), redirect, verifier)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	c := &spotoken.Connection{AppID: appID, ID: id, SpotifyUserID: "alice", Scopes: g.Scopes, State: spotoken.StateActive,
		Token: g.Token(), ConsentedAt: now()}
	if err := store.CreateConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	return c.Key()
}

// childClock follows the emulator's virtual time in a child process: now is
// the real clock plus the offset that sync last read from the emulator at
// emuURL (GET /_emulator/clock), which the parent moves between rounds.
func childClock(emuURL string) (now func() time.Time, sync func() error) {
	var offset atomic.Int64
	now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	sync = func() error {
		emuNow, err := emulatorNow(ctx, http.DefaultClient, emuURL)
		if err != nil {
			return err
		}
		offset.Store(int64(time.Until(emuNow)))
		return nil
	}
	return now, sync
}
