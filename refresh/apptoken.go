package refresh

// App tokens: an app's own access token from the client-credentials grant
// (RFC 6749 §4.4), for catalog calls that need no user. One is kept per app
// in the store, sealed, and fetched again once it nears its expiry, by one
// caller at a time everywhere: singleflight in a process, the app token's
// lease across processes, as for a connection's refresh. A client-
// credentials token has no refresh token to lose, so no commit protocol is
// needed beyond that: a fetched token is saved under the lease, and callers
// that waited read it from the store.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// AppTokenStore is what AppTokens needs of a store.
type AppTokenStore interface {
	App(ctx context.Context, id string) (*spotoken.App, error)
	spotoken.AppTokenStore
	// The app's rate-limit window at Spotify's token endpoint, which
	// client-credentials requests honour and open as refreshes do.
	RateLimitedUntil(ctx context.Context, appID string) (time.Time, error)
	ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error)
}

// ClientCredentials gets an app's own token from Spotify: a
// *SpotifyRefresher, which falls back to the previous client secret during
// a rotation.
type ClientCredentials interface {
	ClientCredentials(ctx context.Context, app *spotoken.App) (*accounts.Grant, error)
}

var _ ClientCredentials = (*SpotifyRefresher)(nil)

// AppTokensConfig configures AppTokens. Store and Spotify are required.
type AppTokensConfig struct {
	Store   AppTokenStore
	Spotify ClientCredentials
	// Now is the clock; default time.Now. Give the store the same clock.
	Now func() time.Time
	// Owner names this replica in leases; default a random id.
	Owner string
	// LeaseTTL bounds how long a replica that died mid-fetch holds the
	// others back; a fetch is given half of it. Default 30s.
	LeaseTTL time.Duration
	// WaitPoll is how often a caller waiting for another replica's fetch
	// re-reads the store (real time). Default 50ms.
	WaitPoll time.Duration
	// CacheTTL bounds how long a token is served from memory before the
	// store is read again; zero keeps it until it is no longer valid.
	CacheTTL time.Duration
	// FailureHold is how long a failed fetch holds further fetches for the
	// app back in this replica (at least Retry-After when Spotify sent
	// one); callers get the still-valid token or the error meanwhile.
	// Default 5s; a refused client (invalid_client) holds for 12 times it.
	FailureHold time.Duration
	// Logger receives one line per fetch outcome; never a token. Default: discard.
	Logger *slog.Logger
}

// AppTokenStats are an AppTokens' counters since it started.
type AppTokenStats struct {
	// Fetches counts client-credentials requests sent to Spotify,
	// Failures those that failed.
	Fetches, Failures int64
	// LeaseWaits counts fetches that waited for another replica's.
	LeaseWaits int64
	// VendsMemory and VendsStore count answers from memory and from the
	// store (another replica's token, or this one's after a fetch).
	VendsMemory, VendsStore int64
}

// AppTokens hands out apps' client-credentials tokens. It is safe for
// concurrent use.
type AppTokens struct {
	cfg     AppTokensConfig
	log     *slog.Logger
	cache   sync.Map // app id → *cached
	flights singleflight.Group
	seq     atomic.Int64

	fetches, failures, leaseWaits, vendsMemory, vendsStore atomic.Int64

	mu   sync.Mutex
	hold map[string]heldFetch // app id → no fetch before until
}

// heldFetch is a failed fetch's answer, given until another may be tried.
type heldFetch struct {
	until time.Time
	err   *spotoken.Error
}

// NewAppTokens returns an AppTokens for cfg.
func NewAppTokens(cfg AppTokensConfig) (*AppTokens, error) {
	if cfg.Store == nil || cfg.Spotify == nil {
		return nil, errors.New("refresh: AppTokensConfig needs a Store and Spotify")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Owner == "" {
		cfg.Owner = randomOwner("apptokens-")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.WaitPoll <= 0 {
		cfg.WaitPoll = 50 * time.Millisecond
	}
	if cfg.FailureHold <= 0 {
		cfg.FailureHold = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &AppTokens{cfg: cfg, log: cfg.Logger, hold: make(map[string]heldFetch)}, nil
}

// Stats returns the counters.
func (a *AppTokens) Stats() AppTokenStats {
	return AppTokenStats{Fetches: a.fetches.Load(), Failures: a.failures.Load(), LeaseWaits: a.leaseWaits.Load(),
		VendsMemory: a.vendsMemory.Load(), VendsStore: a.vendsStore.Load()}
}

// appRequest is what one flight must achieve.
type appRequest struct {
	minTTL   time.Duration
	force    bool
	rejected spotoken.Secret
}

// Token returns appID's own access token, valid for at least minTTL: from
// memory, else from the store, else from Spotify under the app token's
// lease. Errors wrap spotoken.ErrNotFound (no such app),
// ErrUnauthorizedClient (a public app: no client secret),
// ErrAppMisconfigured (Spotify refused the client), ErrRateLimited or
// ErrUnavailable (with RetryAfter).
func (a *AppTokens) Token(ctx context.Context, appID string, minTTL time.Duration) (AccessToken, error) {
	if v, ok := a.cache.Load(appID); ok {
		if c, now := v.(*cached), a.cfg.Now(); c.Valid(now, minTTL) && (c.until.IsZero() || now.Before(c.until)) {
			a.vendsMemory.Add(1)
			return c.AccessToken, nil
		}
	}
	return a.fly(ctx, appID, appRequest{minTTL: minTTL})
}

// Refresh fetches a new token for appID now, whatever the current one's
// expiry; concurrent calls share one fetch.
func (a *AppTokens) Refresh(ctx context.Context, appID string) (AccessToken, error) {
	return a.fly(ctx, appID, appRequest{force: true})
}

// Invalidate tells AppTokens that Spotify refused token (a 401): a new
// token is fetched only if token is still the app's current one, so a
// burst of 401s causes one fetch. It returns the token to use now.
func (a *AppTokens) Invalidate(ctx context.Context, appID string, token spotoken.Secret) (AccessToken, error) {
	if v, ok := a.cache.Load(appID); ok && v.(*cached).Token == token {
		a.cache.CompareAndDelete(appID, v)
	}
	return a.fly(ctx, appID, appRequest{rejected: token})
}

// fly runs req for appID, sharing the work with concurrent callers of the
// same kind.
func (a *AppTokens) fly(ctx context.Context, appID string, req appRequest) (AccessToken, error) {
	flight := appID
	switch {
	case req.force:
		flight += "\x00force"
	case req.rejected != "":
		flight += "\x00rejected"
	}
	for attempt := 0; ; attempt++ {
		ch := a.flights.DoChan(flight, func() (any, error) {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*a.cfg.LeaseTTL)
			defer cancel()
			return a.obtain(fctx, appID, req)
		})
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return AccessToken{}, fmt.Errorf("app token of %s: %w", appID, ctx.Err())
		}
		if res.Err != nil {
			return AccessToken{}, res.Err
		}
		at := res.Val.(AccessToken)
		if req.force || req.rejected != "" || at.Valid(a.cfg.Now(), req.minTTL) || attempt == 1 {
			return at, nil
		}
	}
}

// usable answers from the stored row when it can.
func (a *AppTokens) usable(app *spotoken.App, row *spotoken.AppToken, req appRequest) (AccessToken, bool) {
	if row == nil || row.ClientID != app.ClientID || row.AccessToken == "" {
		return AccessToken{}, false
	}
	at := AccessToken{Token: row.AccessToken, Expiry: row.Expiry}
	now := a.cfg.Now()
	switch {
	case req.force:
		return AccessToken{}, false
	case req.rejected != "":
		return at, row.AccessToken != req.rejected && at.Valid(now, 0)
	}
	return at, at.Valid(now, req.minTTL)
}

// readRow reads the app's token row; nil when it has none yet.
func (a *AppTokens) readRow(ctx context.Context, appID string) (*spotoken.AppToken, error) {
	row, err := a.cfg.Store.AppToken(ctx, appID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("app token of %s: %w", appID, err)
	}
	return row, nil
}

// obtain is one flight: read the row, and fetch under the lease if needed.
func (a *AppTokens) obtain(ctx context.Context, appID string, req appRequest) (AccessToken, error) {
	app, err := a.cfg.Store.App(ctx, appID)
	if err != nil {
		return AccessToken{}, err
	}
	if app.ClientSecret == "" {
		return AccessToken{}, &spotoken.Error{Code: spotoken.EUnauthorizedClient,
			Message: fmt.Sprintf("app %s is a public client (no client secret): Spotify gives app tokens (the client-credentials grant) only to apps with a client secret", appID)}
	}
	row, err := a.readRow(ctx, appID)
	if err != nil {
		return AccessToken{}, err
	}
	owner := fmt.Sprintf("%s/%d", a.cfg.Owner, a.seq.Add(1))
	waited := false
	for {
		if at, ok := a.usable(app, row, req); ok {
			a.remember(appID, at)
			a.vendsStore.Add(1)
			return at, nil
		}
		window, err := a.cfg.Store.RateLimitedUntil(ctx, appID)
		if err != nil {
			return AccessToken{}, fmt.Errorf("app token of %s: rate-limit window: %w", appID, err)
		}
		if at, held, err := a.held(appID, row, app, window); held {
			return at, err
		}
		_, err = a.cfg.Store.AcquireAppTokenLease(ctx, appID, owner, a.cfg.LeaseTTL)
		if err == nil {
			return a.fetchLeased(ctx, app, owner, req)
		}
		if !errors.Is(err, spotoken.ErrLeaseHeld) {
			return AccessToken{}, fmt.Errorf("app token of %s: lease: %w", appID, err)
		}
		if !waited {
			a.leaseWaits.Add(1)
			waited = true
		}
		if row, err = a.waitForOther(ctx, appID, row); err != nil {
			return AccessToken{}, err
		}
		// Another replica's new token satisfies a forced or rejected request.
		req.force, req.rejected = false, ""
	}
}

// held reports whether a recent failed fetch in this replica, or the
// app's rate-limit window (which ends at window, in the store: every
// replica's 429s), holds this fetch back, and then answers with the stored
// token if it is still valid, or the failure.
func (a *AppTokens) held(appID string, row *spotoken.AppToken, app *spotoken.App, window time.Time) (AccessToken, bool, error) {
	now := a.cfg.Now()
	a.mu.Lock()
	h, ok := a.hold[appID]
	if ok && !now.Before(h.until) {
		delete(a.hold, appID)
		ok = false
	}
	a.mu.Unlock()
	if window.After(now) && (!ok || window.After(h.until)) {
		h, ok = heldFetch{until: window, err: &spotoken.Error{Code: spotoken.ERateLimited, Message: "Spotify rate-limited this app"}}, true
	}
	if !ok {
		return AccessToken{}, false, nil
	}
	if row != nil && row.ClientID == app.ClientID {
		if at := (AccessToken{Token: row.AccessToken, Expiry: row.Expiry}); at.Valid(now, 0) {
			return at, true, nil
		}
	}
	e := *h.err // shared: answer a copy
	e.RetryAfter = h.until.Sub(now)
	return AccessToken{}, true, &e
}

// waitForOther re-reads the row until the replica holding the lease has
// saved a token (the version moved) or its lease is gone.
func (a *AppTokens) waitForOther(ctx context.Context, appID string, last *spotoken.AppToken) (*spotoken.AppToken, error) {
	var version int64 = -1
	if last != nil {
		version = last.Version
	}
	t := time.NewTicker(a.cfg.WaitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("app token of %s: waiting for another replica's fetch: %w", appID, ctx.Err())
		case <-t.C:
		}
		row, err := a.readRow(ctx, appID)
		if err != nil {
			return nil, err
		}
		if row == nil || row.Version != version || !row.Lease.Held(a.cfg.Now()) {
			return row, nil
		}
	}
}

// fetchLeased fetches a token while holding the lease, saves it, and
// releases the lease.
func (a *AppTokens) fetchLeased(ctx context.Context, app *spotoken.App, owner string, req appRequest) (AccessToken, error) {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := a.cfg.Store.ReleaseAppTokenLease(rctx, app.ID, owner); err != nil && !errors.Is(err, spotoken.ErrLeaseLost) {
			a.log.Warn("release app token lease", "app", app.ID, "err", err)
		}
	}()
	// Another replica may have saved a token between our read and our lease.
	row, err := a.readRow(ctx, app.ID)
	if err != nil {
		return AccessToken{}, err
	}
	if at, ok := a.usable(app, row, req); ok {
		a.remember(app.ID, at)
		a.vendsStore.Add(1)
		return at, nil
	}
	// Or opened the app's rate-limit window.
	window, err := a.cfg.Store.RateLimitedUntil(ctx, app.ID)
	if err != nil {
		return AccessToken{}, fmt.Errorf("app token of %s: rate-limit window: %w", app.ID, err)
	}
	if at, held, err := a.held(app.ID, row, app, window); held {
		return at, err
	}
	fctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseTTL/2)
	defer cancel()
	a.fetches.Add(1)
	grant, err := a.cfg.Spotify.ClientCredentials(fctx, app)
	if err != nil {
		return a.failed(app, row, err)
	}
	now := a.cfg.Now()
	expiry := grant.Expiry
	if expiry.IsZero() {
		expiry = now.Add(time.Hour) // Spotify's documented lifetime, when expires_in is missing
	}
	tok := &spotoken.AppToken{AppID: app.ID, ClientID: app.ClientID, AccessToken: grant.AccessToken, Expiry: expiry}
	if err := a.cfg.Store.SaveAppToken(context.WithoutCancel(ctx), owner, tok); err != nil {
		// The token is good whether or not it was saved; the next caller
		// elsewhere fetches its own.
		a.log.Warn("save app token", "app", app.ID, "err", err)
	}
	at := AccessToken{Token: grant.AccessToken, Expiry: expiry}
	a.remember(app.ID, at)
	a.log.Info("app token fetched", "app", app.ID, "expires_at", expiry)
	return at, nil
}

// failed answers a failed fetch and holds further fetches back.
func (a *AppTokens) failed(app *spotoken.App, row *spotoken.AppToken, cause error) (AccessToken, error) {
	a.failures.Add(1)
	now := a.cfg.Now()
	hold := a.cfg.FailureHold
	var ae *accounts.Error
	isAccounts := errors.As(cause, &ae)
	var answer *spotoken.Error
	switch {
	case isAccounts && ae.InvalidClient():
		hold *= 12
		answer = &spotoken.Error{Code: spotoken.EAppMisconfigured, Message: fmt.Sprintf("Spotify refused the client credentials of app %s (invalid_client)", app.ID)}
		a.log.Error("app token refused: app misconfigured", "app", app.ID)
	case isAccounts && ae.Status == 429:
		// Open (or lengthen) the app's window for every replica and for
		// its connections' refreshes too.
		until, err := a.cfg.Store.ExtendRateLimit(context.Background(), app.ID, now.Add(max(ae.RetryAfter, time.Second)))
		if err != nil {
			a.log.Error("record the app's rate-limit window", "app", app.ID, "err", err)
		}
		hold = max(hold, ae.RetryAfter, until.Sub(now))
		answer = &spotoken.Error{Code: spotoken.ERateLimited, Message: "Spotify rate-limited this app"}
		a.log.Warn("app token fetch rate-limited", "app", app.ID, "retry_in", hold)
	default:
		if isAccounts {
			hold = max(hold, ae.RetryAfter)
		}
		answer = &spotoken.Error{Code: spotoken.EUnavailable, Message: "Spotify is unavailable"}
		a.log.Warn("app token fetch failed", "app", app.ID, "retry_in", hold, "err", cause)
	}
	answer.RetryAfter = hold
	a.mu.Lock()
	a.hold[app.ID] = heldFetch{until: now.Add(hold), err: answer}
	a.mu.Unlock()
	if row != nil && row.ClientID == app.ClientID {
		if at := (AccessToken{Token: row.AccessToken, Expiry: row.Expiry}); at.Valid(now, 0) {
			return at, nil // serve the still-valid token
		}
	}
	return AccessToken{}, answer
}

// remember keeps at in memory for appID.
func (a *AppTokens) remember(appID string, at AccessToken) {
	c := &cached{AccessToken: at}
	if a.cfg.CacheTTL > 0 {
		c.until = a.cfg.Now().Add(a.cfg.CacheTTL)
	}
	a.cache.Store(appID, c)
}
