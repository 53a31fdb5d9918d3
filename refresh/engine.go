// Package refresh keeps connections' access tokens fresh: Engine hands out
// a valid access token for a connection, refreshing it with Spotify when it
// must, exactly once at a time per connection across every replica; Scheduler
// refreshes tokens shortly before they expire.
//
// # One refresh at a time, everywhere
//
// Callers in one process share one refresh (singleflight). Across processes,
// the store's per-connection lease, taken by compare-and-swap with an owner
// and an expiry, lets one replica refresh while the others wait for its
// result by re-reading the row; the lease is renewed while the call to
// Spotify is in flight and released only by its owner. The refresh is
// committed (new access token, rotated refresh token, expiry, scopes) in one
// compare-and-swap update before any caller sees the new access token, so a
// rotated refresh token is never lost to a crash after it was handed out.
//
// # Failures
//
// invalid_grant moves the connection to needs_reauth, with an event, and is
// never retried on its own; the reason is grant_expired when the grant is
// past its six months by our own clock, whatever Spotify's description says,
// and revoked before. invalid_client marks the app misconfigured, with an
// event. 429, 5xx and timeouts back off exponentially with full jitter,
// honouring Retry-After, with a connection.refresh_failed event, and while
// a refresh is held back the still-valid token keeps being served. Callers never wait out a Retry-After: they get
// ErrRateLimited or ErrUnavailable with the time to wait.
//
// # One 429 window per app
//
// A 429 from the token endpoint opens the app's rate-limit window in the
// store (RateLimitStore), which only grows, so every replica honours it: no
// token request for the app leaves any replica before the window ends,
// checked under the connection's lease right before the call to Spotify,
// and a caller whose token needs a refresh meanwhile is answered
// rate_limited at once with the time left. Retry-After is honoured in full,
// hours included: calling into the window makes Spotify lengthen it.
package refresh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mathrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// Store is what the engine needs of a store.
type Store interface {
	App(ctx context.Context, id string) (*spotoken.App, error)
	Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error)
	UpdateConnection(ctx context.Context, key spotoken.ConnectionKey, fn func(c *spotoken.Connection) ([]spotoken.Event, error)) (*spotoken.Connection, error)
	AcquireLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error)
	RenewLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error)
	ReleaseLease(ctx context.Context, key spotoken.ConnectionKey, owner string) error
	AppendEvents(ctx context.Context, events ...spotoken.Event) error
	RateLimitedUntil(ctx context.Context, appID string) (time.Time, error)
	ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error)
	MarkUsed(ctx context.Context, uses []spotoken.ConnectionUse) error
}

// Refresher redeems a refresh token at Spotify for an app.
type Refresher interface {
	Refresh(ctx context.Context, app *spotoken.App, refreshToken spotoken.Secret) (*accounts.Grant, error)
}

// Config configures an Engine. Store and Refresher are required.
type Config struct {
	Store     Store
	Refresher Refresher
	// Now is the clock; default time.Now. Give the store the same clock.
	Now func() time.Time
	// Owner names this replica in leases (each refresh adds a sequence
	// number); default a random id.
	Owner string
	// LeaseTTL bounds how long a replica that died mid-refresh blocks the
	// others; the holder renews it at a third of it. Default 30s.
	LeaseTTL time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff after a
	// transient failure (full jitter). Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// UpstreamRate is the ceiling of token requests to Spotify from this
	// engine (per second, across apps); burst UpstreamBurst. Default
	// DefaultUpstreamRate, burst one second of it; rate.Inf: no limit. The
	// rate adapts below it: a 429 halves it, then it climbs back, from half
	// the ceiling to the ceiling in UpstreamRecovery (default
	// DefaultUpstreamRecovery). Callers' refreshes come first: the
	// scheduler's spend only what the callers leave (see budget).
	UpstreamRate     rate.Limit
	UpstreamBurst    int
	UpstreamRecovery time.Duration
	// CacheSize bounds how many connections' tokens are kept in memory
	// (about CacheEntryBytes each); past it the least recently used by
	// CLOCK are dropped and read from the store again when asked for.
	// Default DefaultCacheSize.
	CacheSize int
	// UseResolution: a caller's use of a connection is recorded (for the
	// scheduler's active window) at most once per UseResolution per
	// connection; default 5m. UseFlushInterval: how often Run writes the
	// uses noted to the store; default 10s. MaxPendingUses bounds the uses
	// waiting to be written; past it new ones are dropped and counted.
	// Default 100,000.
	UseResolution    time.Duration
	UseFlushInterval time.Duration
	MaxPendingUses   int
	// WaitPoll is how often a caller waiting for another replica's refresh
	// re-reads the row (real time). Default 50ms.
	WaitPoll time.Duration
	// Logger receives one line per refresh outcome; never a token. Default: discard.
	Logger *slog.Logger
	// Jitter returns a uniform value in [0, 1) for backoff; default math/rand.
	Jitter func() float64
	// CacheTTL bounds how long a token is served from memory before the
	// store is read again, so a connection deleted or re-authorized through
	// another replica stops being served from this one within CacheTTL.
	// Zero keeps a token in memory until it is no longer valid.
	CacheTTL time.Duration
	// FlightTimeout bounds one refresh flight (store reads, waiting for
	// another replica, the call to Spotify, the commit). A flight does not
	// end when the caller that started it gives up: abandoning a call to
	// Spotify midway could lose a rotated refresh token. Default 60s.
	FlightTimeout time.Duration
	// RotationLossWindow is how long after a refresh whose outcome is
	// unknown (sent to Spotify, no answer) an invalid_grant is reported as
	// rotation_lost rather than revoked: Spotify may have rotated the
	// refresh token in the answer that was lost. Default 24h.
	RotationLossWindow time.Duration
	// OutageGrace is how long past its CacheTTL a token in memory, still
	// valid, keeps being served while the store answers
	// spotoken.ErrStoreUnavailable. Zero serves none.
	OutageGrace time.Duration
	// CommitPatience is how long Spotify's answer to a refresh that
	// rotated the refresh token is held in memory, its commit retried in
	// the background and the lease kept, when the store did not take it
	// (the database went away while Spotify was answering); see
	// keepCommitting. Default 10m.
	CommitPatience time.Duration
	// Observe, when set, is told of the refreshes that changed what
	// spotoken holds (a rotated refresh token, a connection moved to
	// needs_reauth), for the audit trail's detectors. It runs on the
	// refresh's goroutine and must not block.
	Observe func(Outcome)
}

// Outcome is what a refresh changed, as Config.Observe is told.
type Outcome struct {
	Key spotoken.ConnectionKey
	At  time.Time
	// Rotated: Spotify returned a new refresh token, now committed.
	Rotated bool
	// NeedsReauth is the reason Spotify's refusal moved the connection to
	// needs_reauth (revoked, grant_expired, rotation_lost); empty otherwise.
	NeedsReauth string
	// ConsentedAt and GrantExpiresAt are the connection's grant's.
	ConsentedAt, GrantExpiresAt time.Time
}

// AccessToken is what callers get: the access token, never the refresh token.
type AccessToken struct {
	Token  spotoken.Secret
	Expiry time.Time
	Scopes spotoken.Scopes
}

// Valid reports whether the token is valid for at least minTTL after now.
func (a AccessToken) Valid(now time.Time, minTTL time.Duration) bool {
	return a.Token != "" && now.Add(minTTL).Before(a.Expiry)
}

// Stats are the engine's counters since it started.
type Stats struct {
	// Cached is how many tokens are in memory now, of at most CacheSize;
	// Evictions counts those dropped to stay within it.
	Cached, CacheSize int
	Evictions         int64
	// UsesPending are callers' uses of connections noted and not yet
	// written to the store; UsesWritten, written; UsesDropped, dropped
	// because MaxPendingUses were pending.
	UsesPending              int
	UsesWritten, UsesDropped int64
	// UpstreamRate is the adaptive ceiling of token requests per second
	// now; ScheduledWaits counts scheduled refreshes that waited for
	// budget the callers left.
	UpstreamRate   float64
	ScheduledWaits int64
	// DueBacklog is how many connections the scheduler's current pass
	// found due and has not refreshed yet (0 between passes);
	// SchedulerLag is how late the oldest of them is: now less the time it
	// was due (its expiry less the scheduler's Window), 0 if none is late.
	DueBacklog   int64
	SchedulerLag time.Duration

	// Vends counts Token answers by where the token came from: memory, store, refresh.
	VendsMemory, VendsStore, VendsRefresh int64
	// Refreshes counts calls to Spotify by outcome.
	RefreshOK, RefreshInvalidGrant, RefreshInvalidClient, RefreshRateLimited, RefreshTransient int64
	// Rotations counts refreshes that returned a new refresh token.
	Rotations int64
	// LeaseWaits counts flights that waited for another replica's refresh.
	LeaseWaits int64
	// Served counts answers that served a still-valid token while a refresh was held back.
	ServedStale int64
}

type stats struct {
	vendsStore, vendsRefresh                                                                   atomic.Int64
	refreshOK, refreshInvalidGrant, refreshInvalidClient, refreshRateLimited, refreshTransient atomic.Int64
	rotations, leaseWaits, servedStale                                                         atomic.Int64
	// Set by the scheduler: see Stats.DueBacklog and SchedulerLag.
	dueBacklog atomic.Int64
	dueSince   atomic.Int64 // unix nanoseconds the oldest due was due; 0: none
}

// Engine hands out fresh access tokens. It is safe for concurrent use.
type Engine struct {
	cfg   Config
	cache *tokenCache
	// gens counts Forget calls, in a fixed number of slots that keys hash
	// into: nothing is kept per key, so made-up keys cost no memory, and a
	// Forget of one key only makes keys sharing its slot skip one cache fill.
	gens    [genSlots]atomic.Uint64
	flights singleflight.Group
	reads   reads // plain vends' reads, on the callers' goroutines (read.go)
	budget  *budget
	uses    uses
	log     *slog.Logger
	stats   stats

	flightSeq  atomic.Int64 // makes each flight's lease owner unique
	inflight   inflight
	committing sync.Map // ConnectionKey → chan struct{}: a rotated grant waits to be stored
}

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Refresher == nil {
		return nil, errors.New("refresh: Config needs a Store and a Refresher")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Owner == "" {
		cfg.Owner = randomOwner("engine-")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.UpstreamRate <= 0 {
		cfg.UpstreamRate = DefaultUpstreamRate
	}
	if cfg.UpstreamBurst <= 0 {
		cfg.UpstreamBurst = int(min(max(1, cfg.UpstreamRate), 1000))
	}
	if cfg.UpstreamRecovery <= 0 {
		cfg.UpstreamRecovery = DefaultUpstreamRecovery
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.UseResolution <= 0 {
		cfg.UseResolution = 5 * time.Minute
	}
	if cfg.UseFlushInterval <= 0 {
		cfg.UseFlushInterval = 10 * time.Second
	}
	if cfg.MaxPendingUses <= 0 {
		cfg.MaxPendingUses = 100_000
	}
	if cfg.FlightTimeout <= 0 {
		cfg.FlightTimeout = 60 * time.Second
	}
	if cfg.RotationLossWindow <= 0 {
		cfg.RotationLossWindow = 24 * time.Hour
	}
	if cfg.CommitPatience <= 0 {
		cfg.CommitPatience = 10 * time.Minute
	}
	if cfg.WaitPoll <= 0 {
		cfg.WaitPoll = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Jitter == nil {
		cfg.Jitter = mathrand.Float64
	}
	return &Engine{cfg: cfg, log: cfg.Logger, cache: newTokenCache(cfg.CacheSize),
		budget: newBudget(float64(cfg.UpstreamRate), cfg.UpstreamBurst, cfg.UpstreamRecovery, cfg.Now),
		uses:   uses{pending: make(map[spotoken.ConnectionKey]int64), max: cfg.MaxPendingUses}}, nil
}

// randomOwner is a lease owner name: prefix and 16 random hex digits.
func randomOwner(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := &e.stats
	var lag time.Duration
	if since := s.dueSince.Load(); since != 0 {
		lag = max(0, e.cfg.Now().Sub(time.Unix(0, since)))
	}
	return Stats{
		Cached: e.cache.len(), CacheSize: e.cache.limit * cacheShards, Evictions: e.cache.evicts.Load(),
		UsesPending: e.uses.len(), UsesWritten: e.uses.written.Load(), UsesDropped: e.uses.dropped.Load(),
		UpstreamRate: e.budget.Rate(), ScheduledWaits: e.budget.schedWaits.Load(),
		DueBacklog: max(0, s.dueBacklog.Load()), SchedulerLag: lag,
		VendsMemory: e.cache.hits(), VendsStore: s.vendsStore.Load(), VendsRefresh: s.vendsRefresh.Load(),
		RefreshOK: s.refreshOK.Load(), RefreshInvalidGrant: s.refreshInvalidGrant.Load(),
		RefreshInvalidClient: s.refreshInvalidClient.Load(), RefreshRateLimited: s.refreshRateLimited.Load(),
		RefreshTransient: s.refreshTransient.Load(), Rotations: s.rotations.Load(),
		LeaseWaits: s.leaseWaits.Load(), ServedStale: s.servedStale.Load(),
	}
}

// Owner is the name this engine uses in leases.
func (e *Engine) Owner() string { return e.cfg.Owner }

// request is what one flight must achieve.
type request struct {
	minTTL   time.Duration
	force    bool            // refresh even if the stored token is valid
	rejected spotoken.Secret // refresh only if this is still the current token
	noWait   bool            // give up instead of waiting for another replica's refresh
	// scheduled: the scheduler's refresh, which spends only the budget
	// callers leave, taken before the lease so that no caller waits on a
	// lease whose holder waits for budget.
	scheduled bool
	gen       uint64 // the key's generation when the flight started; see remember
}

// Token returns an access token for key valid for at least minTTL: from
// memory when it can, else from the store (another replica may have
// refreshed), else by refreshing under the connection's lease. While Spotify
// rate-limits or fails, a token that is still valid (if for less than
// minTTL) is served rather than an error.
//
// Errors wrap spotoken.ErrNotFound, ErrNeedsReauth, ErrRateLimited,
// ErrUnavailable (both with RetryAfter) or ErrAppMisconfigured. A token
// in memory is returned whatever ctx; past memory, a ctx that has already
// ended returns its error (context.Canceled or DeadlineExceeded, wrapped)
// and starts no read or refresh, as do Refresh and Invalidate.
//
// Each call counts as a use of the connection for the scheduler's active
// window (recorded at most once per Config.UseResolution).
func (e *Engine) Token(ctx context.Context, key spotoken.ConnectionKey, minTTL time.Duration) (AccessToken, error) {
	now := e.cfg.Now()
	h := e.cache.hash(key)
	mem := e.cache.get(key, h)
	if mem != nil {
		// The hit path: integers compared, nothing allocated.
		if n := now.UnixNano(); n+int64(minTTL) < mem.expNano && (mem.untilNano == 0 || n < mem.untilNano) && mem.Token != "" {
			e.cache.hit(mem)
			if n-mem.usedNano.Load() >= int64(e.cfg.UseResolution) {
				e.usedEntry(mem, n)
			}
			return mem.AccessToken, nil
		}
	}
	return e.tokenSlow(ctx, key, minTTL, h, now, mem)
}

// tokenSlow is Token past its cache (mem, possibly nil, was not good
// enough): apart, so that the hit path's frame stays small.
//
//go:noinline
func (e *Engine) tokenSlow(ctx context.Context, key spotoken.ConnectionKey, minTTL time.Duration, h uint64, now time.Time, mem *cached) (AccessToken, error) {
	if err := ended(ctx, key); err != nil {
		return AccessToken{}, err
	}
	at, ok, err := e.readShared(ctx, key, request{minTTL: minTTL})
	if !ok {
		at, err = e.fly(ctx, key, request{minTTL: minTTL})
	}
	e.usedUnless(key, h, now, err)
	if err != nil && mem != nil && errors.Is(err, spotoken.ErrStoreUnavailable) {
		// The database is away: a token still valid in memory is served
		// for up to OutageGrace past its CacheTTL (bounded staleness: a
		// deletion on another replica is not seen meanwhile).
		if now := e.cfg.Now(); mem.Valid(now, 0) && (mem.until.IsZero() || now.Before(mem.until.Add(e.cfg.OutageGrace))) {
			e.stats.servedStale.Add(1)
			return mem.AccessToken, nil
		}
	}
	return at, err
}

// Refresh refreshes key's token now, whatever its expiry, and returns the
// new one. Concurrent calls share one refresh.
func (e *Engine) Refresh(ctx context.Context, key spotoken.ConnectionKey) (AccessToken, error) {
	if err := ended(ctx, key); err != nil {
		return AccessToken{}, err
	}
	now := e.cfg.Now()
	at, err := e.fly(ctx, key, request{force: true})
	e.usedUnless(key, e.cache.hash(key), now, err)
	return at, err
}

// Invalidate tells the engine that Spotify rejected token for key (a 401
// saying it expired or is invalid). It refreshes only if token is still the
// connection's current access token, so a burst of 401s for one token causes
// one refresh, and returns the token to use now.
func (e *Engine) Invalidate(ctx context.Context, key spotoken.ConnectionKey, token spotoken.Secret) (AccessToken, error) {
	if err := ended(ctx, key); err != nil {
		return AccessToken{}, err
	}
	h := e.cache.hash(key)
	if c := e.cache.get(key, h); c != nil && c.Token == token {
		e.cache.remove(key, h, c)
	}
	now := e.cfg.Now()
	at, err := e.fly(ctx, key, request{rejected: token})
	e.usedUnless(key, h, now, err)
	return at, err
}

// Drain waits until no refresh is in flight, or ctx is done. Call it when
// shutting down, after the callers (HTTP server, Scheduler) have stopped,
// so refreshes already sent to Spotify are committed and their leases
// released before the process exits.
func (e *Engine) Drain(ctx context.Context) error { return e.inflight.wait(ctx) }

// inflight counts flights in progress; it can be waited on while flights
// come and go, which a sync.WaitGroup does not allow.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to zero
}

func (f *inflight) add() {
	f.mu.Lock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 {
		close(f.zero)
	}
	f.mu.Unlock()
}

func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	zero := f.zero
	f.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("refresh: waiting for refreshes in flight: %w", ctx.Err())
	}
}

// Forget drops key's token from memory, for example after the connection
// was deleted or re-authorized.
func (e *Engine) Forget(key spotoken.ConnectionKey) {
	h := e.cache.hash(key)
	e.gens[h%genSlots].Add(1)
	e.cache.remove(key, h, nil)
}

// remember keeps at in memory for key, unless Forget(key) was called
// since the flight that read at started (gen): a token read just before a
// deletion or re-authorization must not outlive it in memory.
func (e *Engine) remember(key spotoken.ConnectionKey, at AccessToken, gen uint64) {
	h := e.cache.hash(key)
	g := &e.gens[h%genSlots]
	if g.Load() != gen {
		return
	}
	c := &cached{AccessToken: at, key: key, hash: h, expNano: math.MinInt64}
	if !at.Expiry.IsZero() {
		c.expNano = at.Expiry.UnixNano()
	}
	if e.cfg.CacheTTL > 0 {
		c.until = e.cfg.Now().Add(e.cfg.CacheTTL)
		c.untilNano = c.until.UnixNano()
	}
	e.cache.put(c, nil)
	if g.Load() != gen { // Forget ran meanwhile
		e.cache.remove(key, h, c)
	}
}

// genSlots is how many Forget counters keys share.
const genSlots = 4096

// generation is the Forget counter of key's slot. It allocates nothing.
func (e *Engine) generation(key spotoken.ConnectionKey) *atomic.Uint64 {
	return &e.gens[e.cache.hash(key)%genSlots]
}

// ended returns the error of a caller's context that has already ended,
// before the engine starts a read or refresh for it: a flight outlives its
// caller, and a caller whose context is done when its flight's answer is
// ready too would get one or the other at random.
func ended(ctx context.Context, key spotoken.ConnectionKey) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("refresh %s: %w", key, err)
	}
	return nil
}

// fly runs req for key, sharing the work with concurrent callers of the same
// kind. A caller whose minTTL the shared result does not meet flies again
// once.
func (e *Engine) fly(ctx context.Context, key spotoken.ConnectionKey, req request) (AccessToken, error) {
	flight := key.String()
	switch {
	case req.force:
		flight += "\x00force"
	case req.rejected != "":
		flight += "\x00rejected"
	case req.noWait:
		flight += "\x00nowait"
	}
	for attempt := 0; ; attempt++ {
		ch := e.flights.DoChan(flight, func() (any, error) {
			// The flight outlives the caller that started it: see FlightTimeout.
			e.inflight.add()
			defer e.inflight.done()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.FlightTimeout)
			defer cancel()
			return e.obtain(fctx, key, req)
		})
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return AccessToken{}, fmt.Errorf("refresh %s: %w", key, ctx.Err())
		}
		if res.Err != nil {
			return AccessToken{}, res.Err
		}
		at := res.Val.(AccessToken)
		if req.force || req.rejected != "" || at.Valid(e.cfg.Now(), req.minTTL) || attempt == 1 {
			return at, nil
		}
	}
}

// obtain is one flight: read the row, and refresh under the lease if needed.
func (e *Engine) obtain(ctx context.Context, key spotoken.ConnectionKey, req request) (AccessToken, error) {
	req.gen = e.generation(key).Load()
	c, err := e.cfg.Store.Connection(ctx, key)
	if err != nil {
		return AccessToken{}, err
	}
	// Each flight is its own lease owner, so two flights of this process
	// (a caller's and the scheduler's, say) exclude each other too.
	owner := fmt.Sprintf("%s/%d", e.cfg.Owner, e.flightSeq.Add(1))
	waited, budgeted := false, false
	for {
		if at, done, err := e.fromRow(c, req); done {
			if err == nil && !waited {
				e.stats.vendsStore.Add(1)
			}
			return at, err
		}
		window, err := e.window(ctx, key)
		if err != nil {
			return AccessToken{}, err
		}
		if at, held, err := e.heldBack(c, req, window); held {
			return at, err
		}
		if err := e.uncommitted(key); err != nil {
			return AccessToken{}, err
		}
		if req.scheduled && !budgeted {
			if err := e.budget.takeScheduled(ctx); err != nil {
				return AccessToken{}, fmt.Errorf("refresh %s: upstream budget: %w", key, err)
			}
			budgeted = true
		}
		_, err = e.cfg.Store.AcquireLease(ctx, key, owner, e.cfg.LeaseTTL)
		if err == nil {
			return e.refreshLeased(ctx, key, owner, req)
		}
		if !errors.Is(err, spotoken.ErrLeaseHeld) {
			return AccessToken{}, fmt.Errorf("refresh %s: lease: %w", key, err)
		}
		if req.noWait {
			return AccessToken{}, errLeaseBusy
		}
		// Another replica is refreshing: wait for its result.
		if !waited {
			e.stats.leaseWaits.Add(1)
			waited = true
		}
		if c, err = e.waitForOther(ctx, key, c.Version); err != nil {
			return AccessToken{}, err
		}
		// After another replica's refresh, a forced or rejected-token request
		// is satisfied by the new token.
		req.force, req.rejected = false, ""
	}
}

// errLeaseBusy: another replica holds the lease and the caller chose not to wait.
var errLeaseBusy = errors.New("refresh: another replica is refreshing")

// fromRow answers from the stored row when it can: a token that is good
// enough, or the connection's final state.
func (e *Engine) fromRow(c *spotoken.Connection, req request) (at AccessToken, done bool, err error) {
	switch c.State {
	case spotoken.StateNeedsReauth:
		return AccessToken{}, true, needsReauth(c)
	case spotoken.StateRevoked:
		return AccessToken{}, true, &spotoken.Error{Code: spotoken.ENeedsReauth, Message: fmt.Sprintf("connection %s was revoked", c.Key())}
	}
	at = AccessToken{Token: c.Token.AccessToken, Expiry: c.Token.Expiry, Scopes: c.Scopes}
	now := e.cfg.Now()
	switch {
	case req.force:
		return AccessToken{}, false, nil
	case req.rejected != "" && at.Token == req.rejected:
		return AccessToken{}, false, nil
	case req.rejected != "" && at.Valid(now, 0):
		e.remember(c.Key(), at, req.gen) // someone refreshed since that token
		return at, true, nil
	case at.Valid(now, req.minTTL):
		e.remember(c.Key(), at, req.gen)
		return at, true, nil
	}
	return AccessToken{}, false, nil
}

func needsReauth(c *spotoken.Connection) error {
	msg := fmt.Sprintf("connection %s needs the user to authorize again", c.Key())
	if c.LastErrorCode != "" {
		msg += " (" + c.LastErrorCode + ")"
	}
	return &spotoken.Error{Code: spotoken.ENeedsReauth, Message: msg}
}

// window reads the end of key's app's rate-limit window from the store.
func (e *Engine) window(ctx context.Context, key spotoken.ConnectionKey) (time.Time, error) {
	until, err := e.cfg.Store.RateLimitedUntil(ctx, key.AppID)
	if err != nil {
		return time.Time{}, fmt.Errorf("refresh %s: rate-limit window: %w", key, err)
	}
	return until, nil
}

// heldBack reports whether a refresh of c must wait (backoff, or the app's
// rate-limit window, which ends at window), and then answers with the
// still-valid token or an error saying how long to wait.
func (e *Engine) heldBack(c *spotoken.Connection, req request, window time.Time) (AccessToken, bool, error) {
	now := e.cfg.Now()
	until := c.NextAttemptAt
	limited := window.After(now)
	if limited && window.After(until) {
		until = window
	}
	if !until.After(now) {
		return AccessToken{}, false, nil
	}
	at := AccessToken{Token: c.Token.AccessToken, Expiry: c.Token.Expiry, Scopes: c.Scopes}
	if at.Valid(now, 0) {
		e.stats.servedStale.Add(1)
		e.remember(c.Key(), at, req.gen)
		return at, true, nil
	}
	code, msg := spotoken.EUnavailable, "Spotify is unavailable; refreshing is backing off"
	if limited || c.LastErrorCode == spotoken.ERateLimited {
		code, msg = spotoken.ERateLimited, "Spotify rate-limited this app; refreshing is backing off"
	}
	if c.LastErrorCode == "invalid_client" {
		code, msg = spotoken.EAppMisconfigured, "Spotify refused the app's client credentials (invalid_client)"
	}
	return AccessToken{}, true, &spotoken.Error{Code: code, Message: msg, RetryAfter: until.Sub(now)}
}

// waitForOther re-reads the row until the replica holding the lease has
// committed (the version moved) or its lease is gone.
func (e *Engine) waitForOther(ctx context.Context, key spotoken.ConnectionKey, version int64) (*spotoken.Connection, error) {
	t := time.NewTicker(e.cfg.WaitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("refresh %s: waiting for another replica's refresh: %w", key, ctx.Err())
		case <-t.C:
		}
		c, err := e.cfg.Store.Connection(ctx, key)
		if err != nil {
			return nil, err
		}
		if c.Version != version || !c.Lease.Held(e.cfg.Now()) {
			return c, nil
		}
	}
}

// refreshLeased refreshes key while holding its lease, and releases it:
// in the commit's own transaction when the refresh is stored, else on its
// own.
func (e *Engine) refreshLeased(ctx context.Context, key spotoken.ConnectionKey, owner string, req request) (_ AccessToken, err error) {
	released := false
	defer func() {
		if released || errors.Is(err, errKeptLease) {
			return // the commit released it, or keepCommitting holds it until the answer is stored
		}
		// Release even if ctx is done; a lease left behind would hold others back for its TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := e.cfg.Store.ReleaseLease(rctx, key, owner); err != nil && !errors.Is(err, spotoken.ErrLeaseLost) {
			e.log.Warn("release lease", "connection", key.String(), "err", err)
		}
	}()
	// Re-read under the lease: another replica may have refreshed between
	// our read and our lease.
	c, err := e.cfg.Store.Connection(ctx, key)
	if err != nil {
		return AccessToken{}, err
	}
	if at, done, err := e.fromRow(c, req); done {
		return at, err
	}
	if at, held, err := e.heldBack(c, req, time.Time{}); held {
		return at, err
	}
	app, err := e.cfg.Store.App(ctx, key.AppID)
	if err != nil {
		return AccessToken{}, fmt.Errorf("refresh %s: app: %w", key, err)
	}
	if !req.scheduled { // the scheduler took its budget before the lease
		if err := e.budget.takeCaller(ctx); err != nil {
			return AccessToken{}, fmt.Errorf("refresh %s: upstream rate limit: %w", key, err)
		}
	}
	// The app's window, read last, right before the call: another replica
	// may have met a 429 while this one waited.
	window, err := e.window(ctx, key)
	if err != nil {
		return AccessToken{}, err
	}
	if at, held, err := e.heldBack(c, req, window); held {
		return at, err
	}
	if err := e.storeAway(); err != nil {
		// Spotify's answer could not be committed, and with rotation
		// the refresh token it replaces would be gone: send nothing.
		return AccessToken{}, fmt.Errorf("refresh %s: not sent: %w", key, err)
	}
	grant, err := e.callSpotify(ctx, key, owner, app, c.Token.RefreshToken)
	if err != nil {
		return e.failed(ctx, key, c, err)
	}
	at, err := e.commit(ctx, key, owner, c, grant, req.gen)
	released = err == nil
	return at, err
}

// callSpotify redeems the refresh token, renewing the lease while the call
// is in flight.
func (e *Engine) callSpotify(ctx context.Context, key spotoken.ConnectionKey, owner string, app *spotoken.App, rt spotoken.Secret) (*accounts.Grant, error) {
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(e.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-callCtx.Done():
				return
			case <-t.C:
				if _, err := e.cfg.Store.RenewLease(callCtx, key, owner, e.cfg.LeaseTTL); err != nil && callCtx.Err() == nil {
					e.log.Warn("renew lease", "connection", key.String(), "err", err)
				}
			}
		}
	}()
	grant, err := e.cfg.Refresher.Refresh(callCtx, app, rt)
	cancel()
	<-renewed
	return grant, err
}

// commit stores a successful refresh before anyone sees the new token,
// and gives up owner's lease in the same transaction: one write, where the
// commit and the release were two. When it fails the lease is kept (the
// caller releases it, or keepCommitting holds it).
func (e *Engine) commit(ctx context.Context, key spotoken.ConnectionKey, owner string, read *spotoken.Connection, g *accounts.Grant, gen uint64) (AccessToken, error) {
	e.stats.refreshOK.Add(1)
	now := e.cfg.Now()
	rotated := g.RefreshToken != "" && g.RefreshToken != read.Token.RefreshToken
	if rotated {
		e.stats.rotations.Add(1)
	}
	update := func(c *spotoken.Connection) ([]spotoken.Event, error) {
		if c.Version != read.Version {
			// Only a writer without the lease (a re-authorization, a
			// deletion) can get here; its grant wins.
			return nil, fmt.Errorf("refresh %s: %w: the connection changed during the refresh", key, spotoken.ErrConflict)
		}
		c.Token.AccessToken, c.Token.Expiry = g.AccessToken, g.Expiry
		if g.RefreshToken != "" {
			c.Token.RefreshToken = g.RefreshToken // an empty one keeps the old
		}
		if len(g.Scopes) > 0 {
			c.Scopes = g.Scopes
		}
		c.LastRefreshAt, c.ConsecutiveFailures, c.NextAttemptAt, c.LastErrorCode = now, 0, time.Time{}, ""
		c.RefreshUnknownAt = time.Time{}
		events := []spotoken.Event{event(spotoken.EventConnectionRefreshed, key, map[string]any{"expires_at": g.Expiry.UTC()})}
		if rotated {
			events = append(events, event(spotoken.EventConnectionRotated, key, nil))
		}
		return events, nil
	}
	c, err := e.cfg.Store.UpdateConnection(spotoken.ReleasingLease(context.WithoutCancel(ctx), owner), key, update)
	if err != nil && rotated && !errors.Is(err, spotoken.ErrConflict) && !errors.Is(err, spotoken.ErrNotFound) {
		// The new refresh token exists only in this process: hold it
		// and keep trying, and answer now.
		e.keepCommitting(key, owner, update, gen, err)
		return AccessToken{}, fmt.Errorf("refresh %s: commit: %w (%w)", key, err, errKeptLease)
	}
	if err != nil {
		e.log.Error("commit refresh", "connection", key.String(), "rotated", rotated, "err", err)
		return AccessToken{}, fmt.Errorf("refresh %s: commit: %w", key, err)
	}
	return e.committed(key, c, gen, rotated), nil
}

// committed records a stored refresh and returns its token.
func (e *Engine) committed(key spotoken.ConnectionKey, c *spotoken.Connection, gen uint64, rotated bool) AccessToken {
	at := AccessToken{Token: c.Token.AccessToken, Expiry: c.Token.Expiry, Scopes: c.Scopes}
	e.remember(key, at, gen)
	e.stats.vendsRefresh.Add(1)
	if rotated && e.cfg.Observe != nil {
		e.cfg.Observe(Outcome{Key: key, At: e.cfg.Now(), Rotated: true, ConsentedAt: c.ConsentedAt, GrantExpiresAt: c.GrantExpiresAt})
	}
	e.log.Info("refreshed", "connection", key.String(), "rotated", rotated, "expires_at", at.Expiry)
	return at
}

// failed records a failed refresh and answers the caller.
func (e *Engine) failed(ctx context.Context, key spotoken.ConnectionKey, read *spotoken.Connection, cause error) (AccessToken, error) {
	now := e.cfg.Now()
	var ae *accounts.Error
	isAccounts := errors.As(cause, &ae)
	var retryAfter time.Duration
	if isAccounts {
		retryAfter = ae.RetryAfter
	}
	var update func(c *spotoken.Connection) ([]spotoken.Event, error)
	var answer error
	var observed Outcome // what Observe is told once the failure is recorded
	switch {
	case isAccounts && ae.InvalidGrant():
		e.stats.refreshInvalidGrant.Add(1)
		// Our own clock tells an expired grant (six months from consent),
		// not Spotify's description, which says "Refresh token expired" or
		// "Refresh token revoked" for one (DESIGN §3.6).
		reason := "revoked"
		switch {
		case !read.GrantExpiresAt.IsZero() && !now.Before(read.GrantExpiresAt):
			reason = "grant_expired"
		case !read.RefreshUnknownAt.IsZero() && now.Sub(read.RefreshUnknownAt) <= e.cfg.RotationLossWindow:
			// An earlier refresh got no answer: Spotify may have rotated
			// the refresh token in it, and this one is the old token.
			reason = "rotation_lost"
		}
		observed = Outcome{Key: key, At: now, NeedsReauth: reason, ConsentedAt: read.ConsentedAt, GrantExpiresAt: read.GrantExpiresAt}
		update = func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.State, c.LastErrorCode = spotoken.StateNeedsReauth, "invalid_grant"
			c.ConsecutiveFailures++
			return []spotoken.Event{event(spotoken.EventConnectionNeedsReauth, key, map[string]any{"reason": reason, "error": "invalid_grant"})}, nil
		}
		answer = &spotoken.Error{Code: spotoken.ENeedsReauth, Message: fmt.Sprintf("Spotify refused the refresh token of %s (%s); the user must authorize again", key, reason)}
		e.log.Warn("refresh refused: needs re-authorization", "connection", key.String(), "reason", reason)
	case isAccounts && ae.InvalidClient():
		e.stats.refreshInvalidClient.Add(1)
		next := now.Add(e.cfg.MaxBackoff)
		update = func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.LastErrorCode, c.NextAttemptAt = "invalid_client", next
			c.ConsecutiveFailures++
			return []spotoken.Event{spotoken.NewEvent(spotoken.EventAppError, key, now, map[string]any{"error": "invalid_client"})}, nil
		}
		answer = &spotoken.Error{Code: spotoken.EAppMisconfigured, Message: fmt.Sprintf("Spotify refused the client credentials of app %s (invalid_client)", key.AppID), RetryAfter: e.cfg.MaxBackoff}
		e.log.Error("refresh refused: app misconfigured", "app", key.AppID, "connection", key.ID)
	case accounts.IsTransient(cause) || errors.Is(cause, accounts.ErrMalformedResponse):
		// A garbled 200 (a captive portal, a broken proxy) is treated as
		// an outage: back off, never hammer.
		code := "server_error"
		if isAccounts && ae.Status == 429 {
			code = spotoken.ERateLimited
			e.stats.refreshRateLimited.Add(1)
			e.budget.limited()
			// Open (or lengthen) the app's window for every replica,
			// while this flight still holds the lease. The window may end
			// later than this Retry-After: another replica's was longer.
			until, err := e.cfg.Store.ExtendRateLimit(context.WithoutCancel(ctx), key.AppID, now.Add(max(retryAfter, time.Second)))
			if err != nil {
				e.log.Error("record the app's rate-limit window", "app", key.AppID, "err", err)
			}
			retryAfter = max(retryAfter, until.Sub(now))
		} else {
			e.stats.refreshTransient.Add(1)
		}
		delay := e.backoff(read.ConsecutiveFailures+1, retryAfter)
		next := now.Add(delay)
		unknown := outcomeUnknown(cause)
		if unknown {
			code = "outcome_unknown"
		}
		update = func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.ConsecutiveFailures++
			c.NextAttemptAt, c.LastErrorCode = next, code
			if unknown {
				c.RefreshUnknownAt = now
			}
			return []spotoken.Event{event(spotoken.EventConnectionRefreshFailed, key,
				map[string]any{"error": code, "attempt": c.ConsecutiveFailures, "retry_at": next})}, nil
		}
		e.log.Warn("refresh failed, backing off", "connection", key.String(), "error", code, "retry_in", delay, "err", cause)
		if at := (AccessToken{Token: read.Token.AccessToken, Expiry: read.Token.Expiry, Scopes: read.Scopes}); at.Valid(now, 0) {
			answer = nil // serve the still-valid token
		} else if code == spotoken.ERateLimited {
			answer = &spotoken.Error{Code: spotoken.ERateLimited, Message: "Spotify rate-limited this app", RetryAfter: delay}
		} else {
			answer = &spotoken.Error{Code: spotoken.EUnavailable, Message: "Spotify is unavailable", RetryAfter: delay}
		}
	default:
		// The caller's context ended, or something unexpected: record nothing.
		return AccessToken{}, fmt.Errorf("refresh %s: %w", key, cause)
	}
	guarded := func(c *spotoken.Connection) ([]spotoken.Event, error) {
		if c.Version != read.Version {
			return nil, errStale
		}
		return update(c)
	}
	_, err := e.cfg.Store.UpdateConnection(context.WithoutCancel(ctx), key, guarded)
	if err != nil && !errors.Is(err, errStale) {
		return AccessToken{}, fmt.Errorf("refresh %s: record failure: %w", key, err)
	}
	if err == nil && observed.NeedsReauth != "" && e.cfg.Observe != nil {
		e.cfg.Observe(observed)
	}
	if answer != nil {
		e.cache.remove(key, e.cache.hash(key), nil)
		return AccessToken{}, answer
	}
	e.stats.servedStale.Add(1)
	return AccessToken{Token: read.Token.AccessToken, Expiry: read.Token.Expiry, Scopes: read.Scopes}, nil
}

var errStale = errors.New("refresh: connection changed meanwhile")

// outcomeUnknown reports whether a failed refresh may have reached Spotify
// and been carried out without its answer reaching us: no HTTP status came
// back (a timeout, a connection cut mid-answer) or the answer could not be
// read. A connection that could not be opened (dial, DNS) sent nothing.
func outcomeUnknown(err error) bool {
	var ae *accounts.Error
	if errors.As(err, &ae) {
		return false
	}
	if errors.Is(err, accounts.ErrMalformedResponse) {
		return true
	}
	var dns *net.DNSError
	var op *net.OpError
	if errors.As(err, &dns) || (errors.As(err, &op) && op.Op == "dial") {
		return false
	}
	return accounts.IsTransient(err)
}

// backoff is exponential backoff with full jitter after failures, and at
// least retryAfter.
func (e *Engine) backoff(failures int, retryAfter time.Duration) time.Duration {
	ceiling := e.cfg.MaxBackoff
	if failures < 30 {
		ceiling = min(e.cfg.MaxBackoff, e.cfg.MinBackoff<<failures)
	}
	d := time.Duration(e.cfg.Jitter() * float64(ceiling))
	return max(d, retryAfter, e.cfg.MinBackoff)
}

// event is an event about key; the store stamps its time.
func event(t spotoken.EventType, key spotoken.ConnectionKey, data map[string]any) spotoken.Event {
	return spotoken.NewEvent(t, key, time.Time{}, data)
}
