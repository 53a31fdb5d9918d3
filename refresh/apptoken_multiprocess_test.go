package refresh_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
)

// Environment of TestAppTokenChild, set by TestAppTokenMultiProcess.
const (
	envAppChildDSN  = "SPOTOKEN_APPTOKEN_CHILD_DSN"
	envAppChildKeys = "SPOTOKEN_APPTOKEN_CHILD_KEYS"
	envAppChildEmu  = "SPOTOKEN_APPTOKEN_CHILD_EMULATOR"
	envAppChildName = "SPOTOKEN_APPTOKEN_CHILD_NAME"
)

const (
	appTokenProcs   = 3
	appTokenCallers = 100 // per process: 300 in all
	appTokenRounds  = 8
)

// TestAppTokenMultiProcess runs three AppTokens in three OS processes on
// one PostgreSQL schema. Eight times the app token expires and 100
// goroutines in each process (300 in all) ask for it at once: exactly one
// client-credentials request reaches Spotify per expiry, and every caller
// in every process gets that request's token.
func TestAppTokenMultiProcess(t *testing.T) {
	base := pgtest.DSN(t)
	emu, err := emulator.New(emulator.Config{
		Clients:  []emulator.Client{{ID: "conf", Secret: "right", RedirectURIs: []string{"https://x.example/cb"}}},
		TokenTTL: time.Hour,
		Now:      time.Now, // virtual time flows, so every process can follow it
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	dsn := pgtest.FreshSchema(t, base, "apptoken")
	keyHex := newKeyMaterial(t)
	keys, err := keyRingFromHex(keyHex)
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: pgSmallPool(dsn), Keys: keys, Now: emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateApp(ctx, &spotoken.App{ID: confApp, ClientID: "conf", ClientSecret: "right"}); err != nil {
		t.Fatal(err)
	}
	children := make([]*child, appTokenProcs)
	for i := range children {
		name := fmt.Sprintf("apptokens-%d", i)
		children[i] = startChild(t, name, "TestAppTokenChild",
			envAppChildDSN+"="+pgSmallPool(dsn), envAppChildKeys+"="+keyHex,
			envAppChildEmu+"="+srv.URL, envAppChildName+"="+name)
	}
	for _, c := range children {
		c.expect("ready")
	}
	requests := func() int64 { return emu.Stats().TokenRequests["client_credentials"] }
	var last string
	for round := 1; round <= appTokenRounds && !t.Failed(); round++ {
		before := requests()
		for _, c := range children {
			c.send(fmt.Sprintf("round %d", round))
		}
		sums := make([]string, len(children))
		for i, c := range children {
			sums[i] = c.expect(fmt.Sprintf("done %d ", round))
			if strings.HasPrefix(sums[i], "ERROR") {
				t.Fatalf("round %d: %s: %s", round, c.name, sums[i])
			}
		}
		if got := requests() - before; got != 1 {
			t.Errorf("round %d: %d client-credentials requests for %d callers in %d processes, want 1",
				round, got, appTokenCallers*appTokenProcs, appTokenProcs)
		}
		for i, sum := range sums {
			if sum != sums[0] {
				t.Errorf("round %d: %s got token %.12s…, %s got %.12s…", round, children[i].name, sum, children[0].name, sums[0])
			}
		}
		if sums[0] == last {
			t.Errorf("round %d: the expired token was served again", round)
		}
		last = sums[0]
		emu.Advance(time.Hour) // the token expires
	}
	for _, c := range children {
		for _, line := range c.finish() {
			if s, ok := strings.CutPrefix(line, "stats "); ok {
				t.Logf("%s: %s", c.name, s)
			}
		}
	}
}

// TestAppTokenChild is one process of TestAppTokenMultiProcess; it skips
// unless run by it. It answers each "round N" line on stdin with "done N
// <sha256 of the token>" once its callers all have the app token.
func TestAppTokenChild(t *testing.T) {
	dsn := os.Getenv(envAppChildDSN)
	if dsn == "" {
		t.Skip("runs as a child process of TestAppTokenMultiProcess")
	}
	name, emuURL := os.Getenv(envAppChildName), os.Getenv(envAppChildEmu)
	keys, err := keyRingFromHex(os.Getenv(envAppChildKeys))
	if err != nil {
		childDie("%s: %v", name, err)
	}
	now, syncClock := childClock(emuURL)
	if err := syncClock(); err != nil {
		childDie("%s: %v", name, err)
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Keys: keys, Now: now})
	if err != nil {
		childDie("%s: open store: %v", name, err)
	}
	defer store.Close()
	tokens, err := refresh.NewAppTokens(refresh.AppTokensConfig{
		Store:    store,
		Spotify:  &refresh.SpotifyRefresher{TokenURL: emuURL + "/api/token", Now: now},
		Now:      now,
		Owner:    name,
		WaitPoll: 2 * time.Millisecond,
	})
	if err != nil {
		childDie("%s: %v", name, err)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		round, ok := strings.CutPrefix(in.Text(), "round ")
		if !ok {
			childDie("%s: unexpected line %q", name, in.Text())
		}
		answer := "ERROR clock: "
		if err := syncClock(); err == nil {
			answer = appTokenRound(tokens)
		} else {
			answer += err.Error()
		}
		fmt.Printf("done %s %s\n", round, strings.ReplaceAll(answer, "\n", " "))
	}
	st := tokens.Stats()
	fmt.Printf("stats fetches %d, lease waits %d, vends from memory/store %d/%d\n", st.Fetches, st.LeaseWaits, st.VendsMemory, st.VendsStore)
}

// appTokenRound has appTokenCallers goroutines ask for the app token at
// once and returns the hash of the one token they all got, or "ERROR …".
func appTokenRound(tokens *refresh.AppTokens) string {
	cctx, cancel := context.WithTimeout(ctx, childTimeout/2)
	defer cancel()
	got := make([]spotoken.Secret, appTokenCallers)
	errs := make([]error, appTokenCallers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range appTokenCallers {
		wg.Go(func() {
			<-start
			at, err := tokens.Token(cctx, confApp, time.Minute)
			got[i], errs[i] = at.Token, err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Sprintf("ERROR caller %d: %v", i, err)
		}
		if got[i] != got[0] {
			return fmt.Sprintf("ERROR caller %d got another token than caller 0", i)
		}
	}
	return tokenSum(got[0])
}
