package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken/emulator"
)

type emulatorOptions struct {
	Addr            string
	Clients         []string
	AutoApprove     string
	Rotation        string
	TokenTTL        time.Duration
	CodeTTL         time.Duration
	RefreshLifetime time.Duration
	RateLimit       int
	DevMode         bool
	Legacy401       bool
	Allowlists      []string
	ExpiredGrant    string
}

func newEmulatorCmd(ios *IOStreams) *cobra.Command {
	opts := &emulatorOptions{}
	cmd := &cobra.Command{
		Use:   "emulator",
		Short: "Run a Spotify emulator (accounts service and Web API) for tests and offline use",
		Long: `Run a stand-in for Spotify's accounts service and a subset of its Web API, on
one base URL, for tests, demos and offline development. The first line on
standard output is the base URL; logs go to standard error.

Point a client at BASE/authorize, BASE/api/token and BASE/v1/. Control it
under BASE/_emulator/: GET stats, POST clock {"advance":"3600s"},
POST users, POST users/{id}/revoke {"client_id":"..."},
POST users/{id}/password-change, POST and DELETE faults.

Without --client, one public client "spotoken-demo" is registered with the
redirect URI http://127.0.0.1:8080/callback.

It answers as Spotify does today (late 2026): a missing, unknown or expired
access token gets 401 "Missing/invalid/expired access token"; --legacy-401
brings back the three messages of before 2026-07. --allowlist makes a client
a development-mode app that serves only the users listed (at most 5), and
--dev-mode takes away what development mode lost in 2026-02/03.`,
		Example: `  spotoken emulator --addr 127.0.0.1:0 --auto-approve alice
  spotoken emulator --client myapp:s3cret=https://app.example/callback --rotation always
  spotoken emulator --client cli=http://127.0.0.1/callback --token-ttl 5m --rate-limit 100
  spotoken emulator --client dev=http://127.0.0.1/callback --allowlist dev=alice,bob --dev-mode
  spotoken emulator --legacy-401 --expired-grant-description "Refresh token revoked"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return emulatorRun(cmd.Context(), ios, opts) },
	}
	f := cmd.Flags()
	f.StringVar(&opts.Addr, "addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	f.StringArrayVar(&opts.Clients, "client", nil, "register a client: ID[:SECRET]=REDIRECT_URI[,REDIRECT_URI...] (repeatable; no secret makes a public PKCE client)")
	f.StringVar(&opts.AutoApprove, "auto-approve", "", "approve every authorization as this user, without the consent page")
	f.StringVar(&opts.Rotation, "rotation", "never", "refresh-token rotation: never, always, grace=DURATION or reuse-detection")
	f.DurationVar(&opts.TokenTTL, "token-ttl", emulator.DefaultTokenTTL, "access-token lifetime")
	f.DurationVar(&opts.CodeTTL, "code-ttl", emulator.DefaultCodeTTL, "authorization-code lifetime")
	f.DurationVar(&opts.RefreshLifetime, "refresh-lifetime", emulator.DefaultRefreshLifetime, "absolute refresh-token lifetime from consent (negative: unlimited)")
	f.IntVar(&opts.RateLimit, "rate-limit", 0, "Web API requests per client per rolling 30 s before 429 (0: unlimited)")
	f.BoolVar(&opts.DevMode, "dev-mode", false, "development-mode app as of 2026: /v1/me without country, email, product, followers, explicit_content; no popularity; playlist items; POST /v1/users/{id}/playlists is 403")
	f.BoolVar(&opts.Legacy401, "legacy-401", false, `answer an unusable access token with the 401 messages of before 2026-07 ("No token provided", "Invalid access token", "The access token expired")`)
	f.StringArrayVar(&opts.Allowlists, "allowlist", nil, "development-mode allowlist: [CLIENT_ID=]USER[,USER...] (at most 5 users; without CLIENT_ID, every client; repeatable)")
	f.StringVar(&opts.ExpiredGrant, "expired-grant-description", emulator.DefaultExpiredGrantDescription, `error_description of the invalid_grant past --refresh-lifetime (Spotify has also sent "Refresh token revoked")`)
	return cmd
}

func (o *emulatorOptions) config() (emulator.Config, error) {
	rot, err := emulator.ParseRotation(o.Rotation)
	if err != nil {
		return emulator.Config{}, usageError{fmt.Errorf("--rotation: %w", err)}
	}
	cfg := emulator.Config{
		AutoApprove:             o.AutoApprove,
		Rotation:                rot,
		TokenTTL:                o.TokenTTL,
		CodeTTL:                 o.CodeTTL,
		RefreshLifetime:         o.RefreshLifetime,
		RateLimit:               o.RateLimit,
		DevelopmentMode:         o.DevMode,
		Legacy401:               o.Legacy401,
		ExpiredGrantDescription: o.ExpiredGrant,
	}
	for _, spec := range o.Clients {
		c, err := emulator.ParseClient(spec)
		if err != nil {
			return emulator.Config{}, usageError{fmt.Errorf("--client: %w", err)}
		}
		cfg.Clients = append(cfg.Clients, c)
	}
	if len(o.Allowlists) > 0 && len(cfg.Clients) == 0 {
		cfg.Clients = []emulator.Client{{ID: emulator.DefaultClientID, RedirectURIs: []string{emulator.DefaultRedirectURI}}}
	}
	for _, spec := range o.Allowlists {
		id, users, err := emulator.ParseAllowlist(spec)
		if err != nil {
			return emulator.Config{}, usageError{fmt.Errorf("--allowlist: %w", err)}
		}
		matched := false
		for i := range cfg.Clients {
			if id == "" || cfg.Clients[i].ID == id {
				cfg.Clients[i].Allowlist = append(cfg.Clients[i].Allowlist, users...)
				matched = true
			}
		}
		if !matched {
			return emulator.Config{}, usageError{fmt.Errorf("--allowlist %q: no --client %q", spec, id)}
		}
	}
	if strings.TrimSpace(o.ExpiredGrant) == "" {
		return emulator.Config{}, usageError{errors.New("--expired-grant-description: must not be empty")}
	}
	switch {
	case o.TokenTTL < time.Second:
		return cfg, usageError{errors.New("--token-ttl: must be at least 1s")}
	case o.CodeTTL <= 0:
		return cfg, usageError{errors.New("--code-ttl: must be positive")}
	case o.RateLimit < 0:
		return cfg, usageError{errors.New("--rate-limit: must not be negative")}
	case o.RefreshLifetime == 0:
		return cfg, usageError{errors.New("--refresh-lifetime: must not be zero (negative means unlimited)")}
	}
	return cfg, nil
}

func emulatorRun(ctx context.Context, ios *IOStreams, opts *emulatorOptions) error {
	cfg, err := opts.config()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(ios.Err, nil))
	cfg.Logger = log
	emu, err := emulator.New(cfg)
	if err != nil {
		return usageError{err}
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	base := "http://" + displayAddr(ln.Addr())
	fmt.Fprintln(ios.Out, base)

	ids := make([]string, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		ids = append(ids, c.ID)
	}
	if len(ids) == 0 {
		ids = []string{emulator.DefaultClientID}
	}
	log.Info("emulator listening", "url", base, "clients", strings.Join(ids, ","),
		"rotation", cfg.Rotation.String(), "token_ttl", opts.TokenTTL, "auto_approve", cfg.AutoApprove,
		"legacy_401", cfg.Legacy401, "dev_mode", cfg.DevelopmentMode)
	return serveUntilDone(ctx, log, ln, emu)
}

// serveUntilDone serves h on ln until ctx is done, then shuts down gracefully.
func serveUntilDone(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// displayAddr turns a listener address into one a client can dial: an
// unspecified IP (":0", "0.0.0.0") becomes 127.0.0.1.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}
