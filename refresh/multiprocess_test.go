package refresh_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken/internal/pgtest"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
)

// Environment of TestEngineChild, set by TestMultiProcessStampede.
const (
	envEngineChildDSN  = "SPOTOKEN_ENGINE_CHILD_DSN"      // the schema's DSN
	envEngineChildKeys = "SPOTOKEN_ENGINE_CHILD_KEYS"     // key material, hex
	envEngineChildEmu  = "SPOTOKEN_ENGINE_CHILD_EMULATOR" // the emulator's base URL
	envEngineChildConn = "SPOTOKEN_ENGINE_CHILD_CONN"     // APP/ID
	envEngineChildName = "SPOTOKEN_ENGINE_CHILD_NAME"     // the engine's lease owner
)

const (
	stampedeProcs   = 3
	stampedeCallers = 300 // per process
	stampedeRounds  = 20  // expiries
	stampedeTTL     = time.Hour
)

// TestMultiProcessStampede runs three engines in three OS processes on one
// PostgreSQL schema. Twenty times the connection's token expires and 300
// goroutines in each process ask for it at once: exactly one refresh reaches
// Spotify per expiry, every caller in every process gets that refresh's
// token, and no refresh token is ever presented after it was rotated out
// (no invalid_grant). Invariants 2 and 3 of DESIGN.md across processes, in
// the rotation modes where a second refresh would show: "always" (a stale
// refresh token is refused) and "reuse-detection" (it also kills the grant).
//
// The processes share the emulator's virtual time: the emulator's base clock
// is the real clock, and each child's clock is the real clock plus the
// offset it reads from GET /_emulator/clock at the start of each round. The
// parent and the children talk over stdin and stdout, a line per step:
// "round N" → "done N <sha256 of the token>" (or "done N ERROR …").
func TestMultiProcessStampede(t *testing.T) {
	base := pgtest.DSN(t)
	for _, mode := range []string{"always", "reuse-detection"} {
		t.Run(mode, func(t *testing.T) { multiProcessStampede(t, base, mode) })
	}
}

func multiProcessStampede(t *testing.T, base, mode string) {
	rot, err := emulator.ParseRotation(mode)
	if err != nil {
		t.Fatal(err)
	}
	emu, err := emulator.New(emulator.Config{
		Clients:     []emulator.Client{{ID: clientID, RedirectURIs: []string{redirect}}},
		AutoApprove: "alice",
		Rotation:    rot,
		TokenTTL:    stampedeTTL,
		Now:         time.Now, // virtual time flows, so every process can follow it
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	dsn := pgtest.FreshSchema(t, base, "refresh") // dropped last, after the children are gone
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
	if err := store.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{redirect}}); err != nil {
		t.Fatal(err)
	}
	key := grantConnection(t, srv.URL, emu.Now, store, "c1")

	children := make([]*child, stampedeProcs)
	for i := range children {
		name := fmt.Sprintf("engine-%d", i)
		children[i] = startChild(t, name, "TestEngineChild",
			envEngineChildDSN+"="+pgSmallPool(dsn),
			envEngineChildKeys+"="+keyHex,
			envEngineChildEmu+"="+srv.URL,
			envEngineChildConn+"="+key.String(),
			envEngineChildName+"="+name)
	}
	for _, c := range children {
		c.expect("ready")
	}

	refreshes := func() int64 { return emu.Stats().TokenRequests["refresh_token"] }
	for round := 1; round <= stampedeRounds && !t.Failed(); round++ {
		before := refreshes()
		emu.Advance(stampedeTTL) // the token expires
		for _, c := range children {
			c.send(fmt.Sprintf("round %d", round))
		}
		sums := make([]string, len(children))
		failed := false
		for i, c := range children {
			answer := c.expect(fmt.Sprintf("done %d ", round))
			if strings.HasPrefix(answer, "ERROR") {
				t.Errorf("round %d: %s: %s", round, c.name, answer)
				failed = true
			}
			sums[i] = answer
		}
		if got := refreshes() - before; got != 1 {
			t.Errorf("round %d: %d refresh requests reached Spotify for %d callers in %d processes, want 1",
				round, got, stampedeCallers*stampedeProcs, stampedeProcs)
		}
		if n := emu.Stats().TokenErrors["invalid_grant"]; n != 0 {
			t.Errorf("round %d: %d invalid_grant answers: a rotated-out refresh token was presented", round, n)
		}
		if failed {
			break
		}
		for i, sum := range sums {
			if sum != sums[0] {
				t.Errorf("round %d: %s got token %.12s…, %s got %.12s…", round, children[i].name, sum, children[0].name, sums[0])
			}
		}
		stored, err := store.Connection(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if tokenSum(stored.Token.AccessToken) != sums[0] {
			t.Errorf("round %d: the processes vended token %.12s…, the store holds %.12s…", round, sums[0], tokenSum(stored.Token.AccessToken))
		}
	}

	for _, c := range children {
		for _, line := range c.finish() {
			if s, ok := strings.CutPrefix(line, "stats "); ok {
				t.Logf("%s: %s", c.name, s)
			}
		}
	}
	st := emu.Stats()
	t.Logf("%d expiries, %d refresh requests, %d invalid_grant", stampedeRounds, st.TokenRequests["refresh_token"], st.TokenErrors["invalid_grant"])

	// The refresh token in the store is the live one: Spotify takes it.
	stored, err := store.Connection(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	ac := accounts.New(accounts.Config{ClientID: clientID, TokenURL: srv.URL + "/api/token", Now: emu.Now})
	if _, err := ac.Refresh(ctx, stored.Token.RefreshToken); err != nil {
		t.Errorf("the stored refresh token no longer refreshes: %v", err)
	}
}

// TestEngineChild is one engine process of TestMultiProcessStampede; it
// skips unless run by it. It answers each "round N" line on stdin with
// "done N <sha256 of the token>" once its 300 callers have a token, and
// exits when stdin closes.
func TestEngineChild(t *testing.T) {
	dsn := os.Getenv(envEngineChildDSN)
	if dsn == "" {
		t.Skip("runs as a child process of TestMultiProcessStampede")
	}
	name, emuURL := os.Getenv(envEngineChildName), os.Getenv(envEngineChildEmu)
	keys, err := keyRingFromHex(os.Getenv(envEngineChildKeys))
	if err != nil {
		childDie("%s: %v", name, err)
	}
	key, err := parseConnectionKey(os.Getenv(envEngineChildConn))
	if err != nil {
		childDie("%s: %v", name, err)
	}

	// The emulator's virtual time: the real clock plus an offset read from
	// the emulator before each round (the emulator advances between rounds).
	now, syncClock := childClock(emuURL)
	if err := syncClock(); err != nil {
		childDie("%s: %v", name, err)
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Keys: keys, Now: now})
	if err != nil {
		childDie("%s: open store: %v", name, err)
	}
	defer store.Close()
	engine, err := refresh.New(refresh.Config{
		Store:     store,
		Refresher: &refresh.SpotifyRefresher{TokenURL: emuURL + "/api/token", Now: now},
		Now:       now,
		Owner:     name,
		WaitPoll:  2 * time.Millisecond,
	})
	if err != nil {
		childDie("%s: %v", name, err)
	}
	fmt.Println("ready")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() { // until the parent closes stdin
		line := in.Text()
		round, ok := strings.CutPrefix(line, "round ")
		if _, err := strconv.Atoi(round); !ok || err != nil {
			childDie("%s: unexpected line %q", name, line)
		}
		answer := "ERROR clock: "
		if err := syncClock(); err == nil {
			answer = stampede(engine, key)
		} else {
			answer += err.Error()
		}
		fmt.Printf("done %s %s\n", round, strings.ReplaceAll(answer, "\n", " "))
	}
	st := engine.Stats()
	fmt.Printf("stats refreshes %d, lease waits %d, vends from memory/store/refresh %d/%d/%d\n",
		st.RefreshOK, st.LeaseWaits, st.VendsMemory, st.VendsStore, st.VendsRefresh)
}

// stampede has stampedeCallers goroutines ask engine for key's token at once
// and returns the hash of the one token they all got, or "ERROR …".
func stampede(engine *refresh.Engine, key spotoken.ConnectionKey) string {
	cctx, cancel := context.WithTimeout(ctx, childTimeout/2)
	defer cancel()
	tokens := make([]spotoken.Secret, stampedeCallers)
	errs := make([]error, stampedeCallers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range stampedeCallers {
		wg.Go(func() {
			<-start
			at, err := engine.Token(cctx, key, 0)
			tokens[i], errs[i] = at.Token, err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Sprintf("ERROR caller %d: %v", i, err)
		}
	}
	for i, tok := range tokens {
		if tok != tokens[0] {
			return fmt.Sprintf("ERROR caller %d got another token than caller 0", i)
		}
	}
	return tokenSum(tokens[0])
}

// pgSmallPool sizes a store's pool so that four stores stay well under the
// server's connection limit: a process runs one flight per connection.
func pgSmallPool(dsn string) string { return pgtest.WithParam(dsn, "pool_max_conns", "4") }
