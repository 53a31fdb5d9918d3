package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	adminsvc "github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/bff"
	"github.com/spotoken/spotoken/console"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/internal/dbguard"
	"github.com/spotoken/spotoken/internal/tlsreload"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/server"
)

type serveOptions struct {
	MemoryLimitMiB  int64
	store           storeOptions
	audit           auditOptions
	Addr            string
	PublicURL       string
	AccountsURL     string
	APIURL          string
	Emulator        bool
	EmulatorUser    string
	EmulatorAddr    string
	EmulatorRotate  string
	TLSCert, TLSKey string
	LogLevel        string
	RefreshWindow   time.Duration
	ActiveWindow    time.Duration
	UpstreamRate    float64
	RefreshWorkers  int
	CacheSize       int
	GrantLifetime   time.Duration
	ExpiryWarning   time.Duration
	LinkTTL         time.Duration
	HookAttempts    int
	HookMaxBackoff  time.Duration
	CacheTTL        time.Duration
	AuthCacheTTL    time.Duration
	ShutdownTimeout time.Duration
	NoScheduler     bool
	SchedInterval   time.Duration
	HeaderTimeout   time.Duration
	BodyTimeout     time.Duration
	MinBodyRate     int
	DBTimeout       time.Duration
	CountInterval   time.Duration
	ListConcurrency int
	ListWait        time.Duration
	ListShare       float64
	OutageGrace     time.Duration
	JanitorInterval time.Duration
	BFFIdleTimeout  time.Duration
	BFFMaxAge       time.Duration
	JSON            bool // --json: the start-up facts as one JSON line instead of the URL and banner
	admin           adminOptions

	// DashSessionsPerApp caps each app's console sessions (hidden: for
	// tests of the cap; 0 is the server's default).
	DashSessionsPerApp int
}

// serveInfo is what serve --json prints when it is ready, on one line.
type serveInfo struct {
	URL         string `json:"url"`
	CallbackURL string `json:"callback_url"`
	// AdminURL is where metrics, the admin API and the console are, with
	// --admin-addr.
	AdminURL string `json:"admin_url,omitempty"`
	// With --emulator: the emulator's base URL, the demo app and its new
	// API key (shown once, as in the banner).
	EmulatorURL string `json:"emulator_url,omitempty"`
	App         string `json:"app,omitempty"`
	APIKey      string `json:"api_key,omitempty"`
}

func newServeCmd(ios *IOStreams) *cobra.Command {
	opts := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker: the HTTP API that vends fresh Spotify tokens to your services",
		Long: `Run the spotoken broker. Apps' services call its HTTP API with an API key
(see 'spotoken apps' and 'spotoken apikeys') to connect Spotify users, get
fresh access tokens and call the Web API through its proxy; it refreshes
tokens before they expire and delivers webhooks. The API is described at
/openapi.json and in docs/api.md.

The first line on standard output is the server's base URL (with --json, a
JSON object with url, callback_url and, with --emulator, emulator_url, app
and api_key); JSON logs go to standard error, one line per request, never
with a token or key.

With --emulator everything runs offline: a Spotify emulator starts in the same
process, a demo app is registered with it, and a new API key is printed with
curl lines that work as printed. Its data goes to a separate database
(emulator.db beside the default one) unless --db is given.

The redirect URI to register with Spotify for every app is <public-url>/callback.`,
		Example: `  spotoken serve --emulator
  spotoken serve --addr 0.0.0.0:8080 --public-url https://tokens.example.com --db postgres://... --key-file /etc/spotoken/keys`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.JSON = jsonOutput(cmd)
			return serveRun(cmd.Context(), ios, opts)
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	opts.store.addTuningFlags(f)
	f.StringVar(&opts.Addr, "addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	f.StringVar(&opts.PublicURL, "public-url", "", "base URL users' browsers reach this server at (default: http(s)://<addr>)")
	f.StringVar(&opts.AccountsURL, "accounts-url", server.SpotifyAccountsURL, "Spotify accounts service")
	f.StringVar(&opts.APIURL, "api-url", server.SpotifyAPIURL, "Spotify Web API")
	f.BoolVar(&opts.Emulator, "emulator", false, "run the Spotify emulator in-process and use it (offline quick start)")
	f.StringVar(&opts.EmulatorUser, "emulator-user", "alice", "with --emulator: approve consent as this user (empty: show the emulator's consent page)")
	f.StringVar(&opts.EmulatorAddr, "emulator-addr", "127.0.0.1:0", "with --emulator: the emulator's listen address")
	f.StringVar(&opts.EmulatorRotate, "emulator-rotation", "never", "with --emulator: refresh-token rotation (never, always, grace=DURATION, reuse-detection)")
	f.StringVar(&opts.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); needs --tls-key")
	f.StringVar(&opts.TLSKey, "tls-key", "", "the private key (PEM) of --tls-cert")
	f.StringVar(&opts.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.DurationVar(&opts.RefreshWindow, "refresh-window", 5*time.Minute, "refresh tokens this long before they expire")
	f.DurationVar(&opts.ActiveWindow, "refresh-active-window", refresh.DefaultActiveWindow, "refresh ahead of expiry only connections whose token a caller asked for within this window; the others are refreshed when asked for (0: every connection)")
	f.Float64Var(&opts.UpstreamRate, "upstream-rate", refresh.DefaultUpstreamRate, "most token requests per second to Spotify from this replica; halves on a 429 and climbs back, and callers' refreshes come before the scheduler's")
	f.IntVar(&opts.RefreshWorkers, "refresh-concurrency", 16, "most scheduled refreshes in flight at once")
	f.IntVar(&opts.CacheSize, "cache-size", refresh.DefaultCacheSize, "most connections' tokens kept in memory (about 750 bytes each); past it the least recently used are dropped and re-read from the database")
	f.DurationVar(&opts.GrantLifetime, "grant-lifetime", server.DefaultGrantLifetime, "how long Spotify keeps a grant valid after consent (six months)")
	f.DurationVar(&opts.ExpiryWarning, "expiry-warning", server.DefaultExpiryWarning, "send connection.expiring this long before a grant expires (0: never)")
	f.DurationVar(&opts.LinkTTL, "link-ttl", server.DefaultLinkTTL, "how long the connect link in a connection.expiring or needs_reauth webhook stays valid")
	f.IntVar(&opts.HookAttempts, "webhook-attempts", server.DefaultWebhookMaxAttempts, "attempts to deliver a webhook before giving up on it")
	f.DurationVar(&opts.HookMaxBackoff, "webhook-max-backoff", server.DefaultWebhookMaxBackoff, "the longest wait between two attempts to deliver a webhook (from 5s, doubling, with jitter)")
	f.DurationVar(&opts.CacheTTL, "cache-ttl", 2*time.Second, "serve a token from memory this long before re-reading the store (bounds staleness across replicas)")
	f.DurationVar(&opts.AuthCacheTTL, "auth-cache-ttl", server.DefaultAuthCacheTTL, "trust a verified API key this long (a revoked key stops working within it; negative: check every request)")
	f.DurationVar(&opts.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, wait this long for requests and refreshes in flight")
	opts.audit.addFlags(f)
	opts.admin.addFlags(f)
	f.DurationVar(&opts.BFFIdleTimeout, "bff-idle-timeout", bff.DefaultIdleTimeout, "end a browser app's session (the backend-for-frontend's) unused this long")
	f.DurationVar(&opts.BFFMaxAge, "bff-max-age", bff.DefaultMaxAge, "end a browser app's session this long after sign-in at the latest (sooner when its grant expires)")
	f.BoolVar(&opts.NoScheduler, "no-scheduler", false, "do not refresh tokens ahead of expiry (refresh only on demand)")
	f.MarkHidden("no-scheduler")
	f.DurationVar(&opts.SchedInterval, "scheduler-interval", 30*time.Second, "how often the scheduler looks for tokens to refresh (jittered by ±25%)")
	f.MarkHidden("scheduler-interval")
	f.DurationVar(&opts.JanitorInterval, "janitor-interval", time.Minute, "how often expired connect links and unconfirmed grants are erased")
	f.MarkHidden("janitor-interval")
	f.DurationVar(&opts.DBTimeout, "db-timeout", 5*time.Second, "longest a request waits for a database that does not answer (each call gets nine tenths, the rest is kept for answering); past it, or with the database refusing, the API answers 503 unavailable")
	f.IntVar(&opts.ListConcurrency, "list-concurrency", server.DefaultListConcurrency, "most listings (GET /v1/connections, /v1/audit) one API key runs at once; more wait their turn up to --list-wait, then get 429 (0: no limit, and no --list-share pause)")
	f.DurationVar(&opts.ListWait, "list-wait", server.DefaultListWait, "how long a listing over --list-concurrency waits for its API key's listing in flight, or the pause after it (--list-share), to end before it is answered 429 rate_limited")
	f.Float64Var(&opts.ListShare, "list-share", server.DefaultListShare, "the most of the time each API key's listings may take: after a listing that took d, the next of the key starts no sooner than d*(1-share)/share later (at most 10s), one page after another too; a fraction in (0, 1], 1: no pause")
	f.Int64Var(&opts.MemoryLimitMiB, "memory-limit-mib", DefaultMemoryLimitMiB, "soft limit on the Go runtime's memory, in MiB: near it the garbage collector runs more often (the process's RSS is this plus SQLite's page caches and the binary); raise it with --cache-size or the audit queue; 0: none; the GOMEMLIMIT environment variable, when set, wins")
	f.DurationVar(&opts.CountInterval, "metrics-max-age", server.DefaultCountInterval, "how old the store-wide counts of /metrics (connections by state, expiring grants) may grow before a scrape has them counted again, in the background (scrapes answer with the last counts and never wait for one)")
	f.DurationVar(&opts.OutageGrace, "outage-grace", 10*time.Minute, "while the database is unavailable, keep serving tokens still valid in memory, to API keys verified before, this long past --cache-ttl and --auth-cache-ttl")
	f.DurationVar(&opts.HeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	f.DurationVar(&opts.BodyTimeout, "body-timeout", server.DefaultBodyTimeout, "how long a request body may take beyond what --min-body-rate allows for its size")
	f.IntVar(&opts.MinBodyRate, "min-body-rate", server.DefaultMinBodyRate, "bytes per second a request body must keep arriving at, after --body-timeout")
	f.IntVar(&opts.DashSessionsPerApp, "dashboard-sessions-per-app", 0, "the most console sessions each app's team keeps (0: the default, 1000)")
	f.MarkHidden("dashboard-sessions-per-app")
	return cmd
}

// DefaultMemoryLimitMiB is --memory-limit-mib's default. With serve's
// other defaults (--cache-size, the audit queue, the detectors' maps) the
// Go heap's live data stays under about 90 MiB however many connections
// are vended (a million distinct ones measured, docs/BENCHMARKS.md); the
// garbage collector's default pacing lets the heap grow to twice that
// between cycles, which put RSS at 220-265 MB. A soft limit of 150 MiB
// keeps it under 200 MB at no CPU cost measured.
const DefaultMemoryLimitMiB = 150

// applyMemoryLimit sets the Go runtime's soft memory limit to mib MiB,
// unless mib is 0 or a limit is set already (GOMEMLIMIT, which wins), and
// returns what puts the limit back as it was.
func applyMemoryLimit(mib int64) (restore func()) {
	prev := debug.SetMemoryLimit(-1) // reads it
	if mib == 0 || prev != math.MaxInt64 {
		return func() {}
	}
	debug.SetMemoryLimit(mib << 20)
	return func() { debug.SetMemoryLimit(prev) }
}

func (o *serveOptions) validate() error {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	if _, err := emulator.ParseRotation(o.EmulatorRotate); err != nil {
		return usageError{fmt.Errorf("--emulator-rotation: %w", err)}
	}
	if o.RefreshWindow <= 0 || o.RefreshWindow > 50*time.Minute {
		return usageError{errors.New("--refresh-window must be between 0 and 50m (tokens live an hour)")}
	}
	if o.ActiveWindow < 0 {
		return usageError{errors.New("--refresh-active-window must be 0 (every connection) or positive")}
	}
	if !(o.UpstreamRate > 0) || o.RefreshWorkers < 1 || o.CacheSize < 1 {
		return usageError{errors.New("--upstream-rate, --refresh-concurrency and --cache-size must be positive")}
	}
	if o.GrantLifetime <= 0 {
		return usageError{errors.New("--grant-lifetime must be positive")}
	}
	if o.ExpiryWarning < 0 || o.ExpiryWarning >= o.GrantLifetime {
		return usageError{errors.New("--expiry-warning must be 0 (never) or positive and shorter than --grant-lifetime")}
	}
	if o.HookAttempts < 1 {
		return usageError{errors.New("--webhook-attempts must be at least 1")}
	}
	if o.HookMaxBackoff < server.DefaultWebhookMinBackoff {
		return usageError{fmt.Errorf("--webhook-max-backoff must be at least %v", server.DefaultWebhookMinBackoff)}
	}
	if o.LinkTTL <= 0 {
		return usageError{errors.New("--link-ttl must be positive")}
	}
	if o.ListConcurrency < 0 || o.ListWait <= 0 {
		return usageError{errors.New("--list-concurrency must be 0 (no limit) or positive and --list-wait positive")}
	}
	if !(o.ListShare > 0 && o.ListShare <= 1) {
		return usageError{fmt.Errorf("--list-share must be a fraction greater than 0 and at most 1 (1: no pause between a key's listings), got %v", o.ListShare)}
	}
	if o.CountInterval <= 0 {
		return usageError{errors.New("--metrics-max-age must be positive")}
	}
	if o.MemoryLimitMiB < 0 || o.MemoryLimitMiB > 1<<30 {
		return usageError{fmt.Errorf("--memory-limit-mib must be 0 (none) or a positive number of MiB, got %d", o.MemoryLimitMiB)}
	}
	if o.DBTimeout <= 0 || o.OutageGrace < 0 {
		return usageError{errors.New("--db-timeout must be positive and --outage-grace not negative")}
	}
	if err := o.store.validateTuning(); err != nil {
		return err
	}
	if o.HeaderTimeout <= 0 || o.BodyTimeout <= 0 || o.MinBodyRate <= 0 {
		return usageError{errors.New("--read-header-timeout, --body-timeout and --min-body-rate must be positive")}
	}
	if o.ShutdownTimeout <= 0 {
		return usageError{errors.New("--shutdown-timeout must be positive")}
	}
	if err := o.audit.validate(); err != nil {
		return err
	}
	if err := o.admin.validate(); err != nil {
		return err
	}
	if o.BFFIdleTimeout <= 0 || o.BFFMaxAge <= 0 || o.BFFMaxAge > server.DefaultGrantLifetime {
		return usageError{errors.New("--bff-idle-timeout and --bff-max-age must be positive, and --bff-max-age at most six months (4380h), a grant's life")}
	}
	if o.Emulator && o.store.DB == "" {
		o.store.DB = filepath.Join(filepath.Dir(defaultDBPath()), "emulator.db")
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageError{fmt.Errorf("--log-level: %q is not debug, info, warn or error", s)}
	}
	return l, nil
}

func serveRun(ctx context.Context, ios *IOStreams, opts *serveOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	defer applyMemoryLimit(opts.MemoryLimitMiB)()
	level, err := parseLevel(opts.LogLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(ios.Err, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	defer ln.Close()
	scheme := "http"
	if opts.TLSCert != "" {
		scheme = "https"
	}
	publicURL := strings.TrimSuffix(opts.PublicURL, "/")
	if publicURL == "" {
		publicURL = scheme + "://" + displayAddr(ln.Addr())
	}
	admin, err := opts.admin.listen(ln, scheme, publicURL)
	if err != nil {
		return err
	}
	defer admin.close()

	// The background work (scheduler, webhooks, janitor) stops on ctx;
	// refreshes it started are drained before exit.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	now := time.Now
	accountsURL, apiURL := opts.AccountsURL, opts.APIURL
	var emuURL string
	if opts.Emulator {
		var emu *emulator.Emulator
		emu, emuURL, err = startBuiltinEmulator(bg, log, opts, publicURL)
		if err != nil {
			return err
		}
		accountsURL, apiURL, now = emuURL, emuURL, emu.Now
	}

	if opts.Emulator {
		opts.store.now = now
	}
	raw, err := opts.store.openStore(ctx, log, true)
	if err != nil {
		return err
	}
	defer raw.Close()
	// Every call the serving side makes goes under --db-timeout.
	store := dbguard.New(raw, dbguard.Config{Timeout: opts.DBTimeout, Unavailable: postgres.IsUnavailable, Logger: log})

	trail, trusted, err := opts.audit.newTrail(store, &opts.store, now, log)
	if err != nil {
		return err
	}
	auditHook, auditStats := auditor(trail)

	metrics := server.NewMetrics()
	transport := server.UpstreamTransport()
	upstream := func(service string) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: metrics.InstrumentTransport(service, transport)}
	}
	spotify := &refresh.SpotifyRefresher{TokenURL: strings.TrimSuffix(accountsURL, "/") + "/api/token", HTTPClient: upstream("accounts"), Now: now}
	// The console's charts count every refresh request by app and hour.
	tally := &refresh.Tally{Store: store, Now: now, Logger: log}
	engine, err := refresh.New(refresh.Config{
		Store:        store,
		Refresher:    tally.Refresher(spotify),
		Now:          now,
		Logger:       log,
		CacheTTL:     opts.CacheTTL,
		CacheSize:    opts.CacheSize,
		UpstreamRate: rate.Limit(opts.UpstreamRate),
		OutageGrace:  opts.OutageGrace,
		Observe:      observe(trail),
	})
	if err != nil {
		return err
	}
	appTokens, err := refresh.NewAppTokens(refresh.AppTokensConfig{Store: store, Spotify: spotify, Now: now, Logger: log, CacheTTL: opts.CacheTTL})
	if err != nil {
		return err
	}
	adminSvc, err := adminsvc.New(adminsvc.Config{Store: store, Now: now, Logger: log, CheckClientSecret: spotify.CheckClientSecret,
		Audit: trail != nil, Record: auditAdminChanges(store, log, trail != nil)})
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		AppTokens: appTokens, Admin: adminSvc,
		Store: store, Tokens: engine, PublicURL: publicURL, AccountsURL: accountsURL, APIURL: apiURL,
		HTTPClient: upstream("api"), Now: now, Logger: log, Metrics: metrics, EngineStats: engine.Stats,
		Ready: readiness(store), GrantLifetime: opts.GrantLifetime, AuthCacheTTL: opts.AuthCacheTTL,
		ExpiryWarning: expiryWarning(opts.ExpiryWarning), LinkTTL: opts.LinkTTL,
		Audit: auditHook, AuditStats: auditStats, TrustedProxies: trusted,
		BodyTimeout: opts.BodyTimeout, MinBodyRate: opts.MinBodyRate, OutageGrace: opts.OutageGrace,
		SeparateAdmin: admin.separate(), AdminURL: admin.url, MetricsToken: admin.metricsToken, NoMetrics: admin.noMetrics,
		HSTSMaxAge: hstsMaxAge(opts.admin.HSTSMaxAge),
		// The counts behind /metrics are passes over every connection,
		// run in the background under their own deadline: without the
		// guard, one slower than --db-timeout is not taken for a
		// database that is away (which would answer every request 503).
		Counter: raw, CountInterval: opts.CountInterval,
		ListConcurrency: listConcurrency(opts.ListConcurrency), ListWait: opts.ListWait, ListShare: opts.ListShare,
	})
	if err != nil {
		return usageError{err}
	}
	var auditRecords console.AuditReader // a nil *audit.Trail must stay a nil interface
	var authLimit console.AuthLimiter
	if trail != nil {
		auditRecords, authLimit = trail, trail
	}
	ops, err := console.New(console.Config{
		Store: store, Admin: adminSvc, Actions: srv, Audit: auditRecords, AuthLimit: authLimit, TrustedProxies: trusted,
		BaseURL: admin.url, Now: now, Logger: log,
		Sessions: spotoken.WebSessionLimits{PerScope: opts.DashSessionsPerApp}, ExpiryWindow: opts.ExpiryWarning,
	})
	if err != nil {
		return usageError{err}
	}
	srv.MountAdmin(ops.Mount)
	browserApps, err := bff.New(bff.Config{Store: store, Server: srv, Tokens: engine, PublicURL: publicURL,
		IdleTimeout: opts.BFFIdleTimeout, MaxAge: opts.BFFMaxAge, Now: now, Logger: log})
	if err != nil {
		return usageError{err}
	}
	srv.HandleLogins(bff.LoginKind, browserApps)
	srv.MountPublic(browserApps.Mount)

	info := serveInfo{URL: publicURL, CallbackURL: srv.CallbackURL()}
	if admin.separate() {
		info.AdminURL = admin.url
	}
	var banner string
	if opts.Emulator {
		key, err := setUpDemoApp(ctx, store, srv, now())
		if err != nil {
			return err
		}
		if err := setUpDemoSPA(ctx, store, publicURL); err != nil {
			return err
		}
		srv.MountPublic(mountExampleSPA)
		banner = demoBanner(publicURL, admin, emuURL, key, opts)
		info.EmulatorURL, info.App, info.APIKey = emuURL, demoAppID, key.Reveal()
	}

	var wg sync.WaitGroup
	background := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(bg); err != nil && !errors.Is(err, context.Canceled) {
				log.Error(name+" stopped", "err", err)
			}
		}()
	}
	if !opts.NoScheduler {
		sched := &refresh.Scheduler{Engine: engine, Store: store, Now: now, Window: opts.RefreshWindow, Logger: log, Interval: opts.SchedInterval,
			ActiveWindow: activeWindow(opts.ActiveWindow), Concurrency: opts.RefreshWorkers}
		background("scheduler", sched.Run)
	}
	background("uses", engine.Run) // callers' uses, for the scheduler's active window
	hooks := &server.Webhooks{Store: store, Now: now, Logger: log, Metrics: metrics, ConnectLink: srv.ConnectLink,
		MaxAttempts: opts.HookAttempts, MaxBackoff: opts.HookMaxBackoff}
	background("webhooks", hooks.Run)
	background("janitor", func(ctx context.Context) error { return srv.Run(ctx, opts.JanitorInterval) })
	background("tally", tally.Run)
	if trail != nil {
		background("audit", trail.Run)
	}

	hs := &http.Server{
		// Each request waits out at most one failed database call.
		Handler: dbguard.Handler(srv), ReadHeaderTimeout: opts.HeaderTimeout, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if opts.TLSCert != "" {
		certs, err := tlsreload.New(opts.TLSCert, opts.TLSKey, log)
		if err != nil {
			return usageError{fmt.Errorf("--tls-cert/--tls-key: %w", err)}
		}
		hs.TLSConfig = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
		if opts.admin.TLSWatch > 0 {
			background("tls-watch", func(ctx context.Context) error { certs.Watch(ctx, opts.admin.TLSWatch); return nil })
		}
		admin.certs = certs
	}
	hup := notifyHangUp()
	background("sighup", func(ctx context.Context) error { reloadOnHangUp(ctx, log, admin.certs, hup); return nil })
	admin.start(hs, dbguard.Handler(srv.AdminHandler()), log)
	if opts.JSON {
		line, _ := json.Marshal(info)
		fmt.Fprintf(ios.Out, "%s\n", line)
	} else {
		fmt.Fprintln(ios.Out, publicURL)
		fmt.Fprint(ios.Out, banner)
	}
	log.Info("spotoken serving", "url", publicURL, "callback", srv.CallbackURL(), "accounts_url", accountsURL, "api_url", apiURL,
		"admin_url", admin.url)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	case err := <-admin.errc:
		serveErr = fmt.Errorf("serve the admin listener: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests and refreshes in flight")
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown: requests still in flight", "err", err)
	}
	admin.shutdown(sctx, log)
	if trail != nil {
		// The requests' records are written within what is left of the
		// deadline, failed batches tried again; Close logs and counts
		// (dropped, write_failed) what it could not write.
		trail.Close(sctx)
	}
	stopBG()
	if !waitBounded(sctx, &wg, shutdownGrace) {
		log.Warn("shutdown: background work still running at the deadline; stopping without it")
	}
	if err := engine.Drain(sctx); err != nil {
		log.Warn("shutdown: refreshes still in flight", "err", err)
	}
	log.Info("stopped")
	return serveErr
}

// shutdownGrace is how long past --shutdown-timeout serve waits for its
// background work to notice that it was told to stop.
const shutdownGrace = time.Second

// waitBounded waits for wg until ctx is done and grace more; it reports
// whether wg finished.
func waitBounded(ctx context.Context, wg *sync.WaitGroup, grace time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// activeWindow maps the flag's 0 (every connection) to the scheduler's negative.
func activeWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// listConcurrency maps the flag's 0 (no limit) to the server's negative.
func listConcurrency(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// expiryWarning maps the flag's 0 (never) to the server's negative.
func expiryWarning(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// readiness reports whether the store answers and is fully migrated.
func readiness(store spotoken.Store) func(context.Context) error {
	if r, ok := store.(interface{ Ready(context.Context) error }); ok {
		return r.Ready
	}
	return nil
}

// The demo app that serve --emulator registers.
const (
	demoAppID    = "demo"
	demoKeyLabel = "quickstart"
)

var demoScopes = spotoken.Scopes{"playlist-read-private", "user-read-currently-playing", "user-read-email", "user-read-private", "user-top-read"}

// startBuiltinEmulator runs the emulator in-process for serve --emulator, with the
// demo client registered for this server's callback.
func startBuiltinEmulator(ctx context.Context, log *slog.Logger, opts *serveOptions, publicURL string) (*emulator.Emulator, string, error) {
	rot, _ := emulator.ParseRotation(opts.EmulatorRotate)
	emu, err := emulator.New(emulator.Config{
		Clients:     []emulator.Client{{ID: emulator.DefaultClientID, RedirectURIs: []string{publicURL + "/callback"}}},
		AutoApprove: opts.EmulatorUser,
		Rotation:    rot,
		Logger:      log.With("component", "emulator"),
	})
	if err != nil {
		return nil, "", usageError{fmt.Errorf("emulator: %w", err)}
	}
	eln, err := net.Listen("tcp", opts.EmulatorAddr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", opts.EmulatorAddr, err)
	}
	emuURL := "http://" + displayAddr(eln.Addr())
	go func() {
		if err := serveUntilDone(ctx, log, eln, emu); err != nil {
			log.Error("emulator stopped", "err", err)
		}
	}()
	return emu, emuURL, nil
}

// setUpDemoApp registers (or updates) the demo app for the emulator, replaces
// the quick start's API key, and returns the new key.
func setUpDemoApp(ctx context.Context, store spotoken.Store, srv *server.Server, now time.Time) (spotoken.Secret, error) {
	app := &spotoken.App{ID: demoAppID, ClientID: emulator.DefaultClientID, RedirectURIs: []string{srv.CallbackURL()},
		DefaultScopes: demoScopes, CreatedAt: now}
	err := store.CreateApp(ctx, app)
	if errors.Is(err, spotoken.ErrConflict) {
		_, err = store.UpdateApp(ctx, demoAppID, func(a *spotoken.App) error {
			a.ClientID, a.ClientSecret, a.RedirectURIs, a.DefaultScopes = app.ClientID, "", app.RedirectURIs, app.DefaultScopes
			return nil
		})
	}
	if err != nil {
		return "", fmt.Errorf("register the demo app: %w", err)
	}
	keys, err := store.APIKeys(ctx, demoAppID)
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		if k.Name == demoKeyLabel && !k.Revoked() {
			if err := store.RevokeAPIKey(ctx, demoAppID, k.ID, now); err != nil {
				return "", err
			}
		}
	}
	key, rec := spotoken.NewAPIKey(demoAppID, demoKeyLabel, now)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		return "", err
	}
	return key, nil
}

func demoBanner(publicURL string, admin *adminSide, emuURL string, key spotoken.Secret, opts *serveOptions) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("spotoken is running offline against its built-in Spotify emulator; data: %s", opts.store.DB)
	p("The demo app %q has a new API key (shown once; earlier quick-start keys were revoked):", demoAppID)
	p("")
	p("  export SPOTOKEN_API_KEY=%s", key.Reveal())
	p("")
	who := "the emulator approves as " + opts.EmulatorUser
	if opts.EmulatorUser == "" {
		who = "open the link in a browser and pick a user on the emulator's consent page"
	}
	p("Connect a Spotify user (%s):", who)
	p("")
	p(`  URL=$(curl -s -X POST %s/v1/connect-sessions -H "Authorization: Bearer $SPOTOKEN_API_KEY" -H "Content-Type: application/json" -d '{"connection_id":"u1"}' | sed -n 's/.*"url":"\([^"]*\)".*/\1/p')`, publicURL)
	if opts.EmulatorUser != "" {
		p(`  curl -sL -b /dev/null "$URL" | grep -o 'Your Spotify account is connected'`)
	} else {
		p(`  echo "$URL"   # open it in a browser`)
	}
	p("")
	p("Get a fresh access token, and call the Web API through the proxy:")
	p("")
	p(`  curl -s -X POST %s/v1/connections/u1/token -H "Authorization: Bearer $SPOTOKEN_API_KEY"`, publicURL)
	p(`  curl -s %s/v1/proxy/u1/v1/me -H "Authorization: Bearer $SPOTOKEN_API_KEY"`, publicURL)
	p("")
	p("Move the emulator's clock two hours on; the next token request refreshes silently:")
	p("")
	p(`  curl -s -X POST %s/_emulator/clock -d '{"advance":"2h"}'`, emuURL)
	p("")
	p("A browser app with no token in JavaScript (the example SPA, on spotoken's backend-for-frontend):")
	p("")
	p("  open %s/spa/", publicURL)
	p("")
	metrics := admin.url + "/metrics"
	if admin.noMetrics {
		metrics = "off on a public --addr (see --admin-addr)"
	}
	p("API: %s/openapi.json · metrics: %s · console: %s/console/ · Ctrl-C stops.", publicURL, metrics, admin.url)
	return b.String()
}
