package sqlite_test

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/sqlite"
)

// writerWorld is a store with one app and n connections, and the order in
// which the writer's gate lets writes in, from the call of record on.
type writerWorld struct {
	store *sqlite.DB
	mu    sync.Mutex
	order []bool // background?
}

func newWriterWorld(t *testing.T, n int) *writerWorld {
	t.Helper()
	w := &writerWorld{store: openDB(t, filepath.Join(t.TempDir(), "w.db"))}
	t.Cleanup(func() { w.store.Close() })
	if err := w.store.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "client-a", RedirectURIs: []string{"https://x.example/cb"}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c := &spotoken.Connection{AppID: "a", ID: fmt.Sprintf("c%d", i), State: spotoken.StateActive,
			Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}
		if err := w.store.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *writerWorld) record() {
	w.store.OnWriterAdmitted(func(background bool) {
		w.mu.Lock()
		w.order = append(w.order, background)
		w.mu.Unlock()
	})
}

// waitQueued waits until fg foreground and bg background writes wait at
// the gate.
func (w *writerWorld) waitQueued(t *testing.T, fg, bg int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		f, b := w.store.WritersWaiting()
		if f == fg && b == bg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting at the writer: %d foreground, %d background; want %d, %d", f, b, fg, bg)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func (w *writerWorld) admitted() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := ""
	for _, bg := range w.order {
		if bg {
			s += "b"
		} else {
			s += "f"
		}
	}
	return s
}

// TestWriterCallersFirst: with the writer busy and background writes (the
// scheduler's lease, batched last uses, an audit batch) queued before
// them, a caller's writes (an on-demand refresh's lease and commit) get
// the writer next, in the order they came; the background ones follow in
// theirs.
func TestWriterCallersFirst(t *testing.T) {
	w := newWriterWorld(t, 4)
	release, err := w.store.HoldWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.record()
	var wg sync.WaitGroup
	run := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}()
	}
	bg := spotoken.Background(ctx)
	key := func(i int) spotoken.ConnectionKey {
		return spotoken.ConnectionKey{AppID: "a", ID: fmt.Sprintf("c%d", i)}
	}
	run("scheduler's lease", func() error { _, err := w.store.AcquireLease(bg, key(0), "scheduler", time.Minute); return err })
	w.waitQueued(t, 0, 1)
	for i := range 3 {
		run("last uses", func() error {
			return w.store.MarkUsed(bg, []spotoken.ConnectionUse{{Key: key(i), At: time.Now()}})
		})
	}
	w.waitQueued(t, 0, 4)
	// The audit trail's batch marks itself background.
	run("audit batch", func() error {
		return w.store.AppendAudit(ctx, spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c0"})
	})
	w.waitQueued(t, 0, 5)
	run("caller's lease", func() error { _, err := w.store.AcquireLease(ctx, key(1), "caller", time.Minute); return err })
	w.waitQueued(t, 1, 5)
	run("caller's commit", func() error {
		_, err := w.store.UpdateConnection(spotoken.ReleasingLease(ctx, "caller"), key(2), func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.Token.AccessToken = "at-2"
			return nil, nil
		})
		return err
	})
	w.waitQueued(t, 2, 5)
	release()
	wg.Wait()
	if got, want := w.admitted(), "ffbbbbb"; got != want {
		t.Errorf("the writer went to %q (f: a caller's write, b: background), want %q", got, want)
	}
}

// TestWriterBackgroundNotStarved: a background write waits behind at most
// eight callers' writes in a row.
func TestWriterBackgroundNotStarved(t *testing.T) {
	w := newWriterWorld(t, 11)
	release, err := w.store.HoldWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.record()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.store.MarkUsed(spotoken.Background(ctx), []spotoken.ConnectionUse{{Key: spotoken.ConnectionKey{AppID: "a", ID: "c0"}, At: time.Now()}}); err != nil {
			t.Error(err)
		}
	}()
	w.waitQueued(t, 0, 1)
	for i := 1; i <= 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.store.AcquireLease(ctx, spotoken.ConnectionKey{AppID: "a", ID: fmt.Sprintf("c%d", i)}, "caller", time.Minute); err != nil {
				t.Error(err)
			}
		}()
	}
	w.waitQueued(t, 10, 1)
	release()
	wg.Wait()
	if got, want := w.admitted(), "ffffffffbff"; got != want {
		t.Errorf("the writer went to %q, want %q", got, want)
	}
}

// TestLeaseWritesKeepFull: the lease writes and MarkUsed commit with
// synchronous=NORMAL and put FULL back for every other write.
func TestLeaseWritesKeepFull(t *testing.T) {
	w := newWriterWorld(t, 1)
	key := spotoken.ConnectionKey{AppID: "a", ID: "c0"}
	check := func(when string) {
		t.Helper()
		if n, err := w.store.WriterSynchronous(); err != nil || n != 2 {
			t.Fatalf("%s: the writer's synchronous is %d (%v), want 2 (FULL)", when, n, err)
		}
	}
	if _, err := w.store.AcquireLease(ctx, key, "A", time.Minute); err != nil {
		t.Fatal(err)
	}
	check("after a take")
	if _, err := w.store.RenewLease(ctx, key, "A", time.Minute); err != nil {
		t.Fatal(err)
	}
	check("after a renewal")
	if _, err := w.store.AcquireLease(ctx, key, "B", time.Minute); err == nil {
		t.Fatal("B took A's lease")
	}
	check("after a refused take")
	if err := w.store.ReleaseLease(ctx, key, "A"); err != nil {
		t.Fatal(err)
	}
	check("after a release")
	if err := w.store.MarkUsed(ctx, []spotoken.ConnectionUse{{Key: key, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	check("after MarkUsed")
}
