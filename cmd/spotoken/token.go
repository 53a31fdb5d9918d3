package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/refresh"
)

// envAPIKey holds the API key of 'token --server': never a flag, so it
// stays out of shell history and process lists.
const envAPIKey = "SPOTOKEN_API_KEY"

// maxMinTTL is the longest --min-ttl: Spotify's access tokens live an hour,
// and the broker accepts up to 55 minutes.
const maxMinTTL = 55 * time.Minute

type tokenOptions struct {
	local       localOptions
	MinTTL      time.Duration
	AccountsURL string
	Server      string
	Connection  string
}

func newTokenCmd(ios *IOStreams) *cobra.Command {
	opts := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "token [--profile P] [--min-ttl D]",
		Short: "Print a valid access token of a profile (or of a broker's connection)",
		Long: `Print a Spotify access token valid for at least --min-ttl, alone on standard
output, for scripts:

  curl -H "Authorization: Bearer $(spotoken token)" https://api.spotify.com/v1/me

The token is the profile's from 'spotoken login'. When it is about to expire,
token refreshes it silently first, at the accounts service the profile
logged in with (Spotify's, or the one login was given with --accounts-url),
and stores the result (including a rotated refresh token) before printing
anything. It never prints a token valid for less than --min-ttl: when the
refresh fails (or Spotify's new token lives less than that), it exits with
status 1 and says why, printing no token.

With --json it prints {"access_token", "expires_at", "scope"} instead.

With --server, token asks a spotoken broker for the token of its connection
--connection instead, authenticating with the app's API key from
$` + envAPIKey + ` (never a flag).

Exit status 4 means a login is needed: there is no such profile (or the
broker has no such connection), or Spotify refused the grant (revoked,
expired after six months); the message says what to run.`,
		Example: `  spotoken token
  spotoken token --profile work --min-ttl 10m --json
  SPOTOKEN_API_KEY=sk_... spotoken token --server https://broker.example --connection user-42`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return tokenRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	f := cmd.Flags()
	opts.local.addFlags(f)
	f.DurationVar(&opts.MinTTL, "min-ttl", 5*time.Minute, "the token stays valid at least this long (up to 55m)")
	f.StringVar(&opts.AccountsURL, "accounts-url", "", "refresh at this accounts service instead of the one the profile logged in with")
	f.StringVar(&opts.Server, "server", "", "ask the spotoken broker at this URL instead of a local profile (API key in $"+envAPIKey+")")
	f.StringVar(&opts.Connection, "connection", "", "with --server: the id of the broker's connection")
	return cmd
}

// tokenView is token's JSON output.
type tokenView struct {
	AccessToken string    `json:"access_token"`
	ExpiresAt   time.Time `json:"expires_at"`
	Scope       string    `json:"scope"`
}

func tokenRun(ctx context.Context, ios *IOStreams, opts *tokenOptions, asJSON bool) error {
	if opts.MinTTL < 0 || opts.MinTTL > maxMinTTL {
		return usageError{fmt.Errorf("--min-ttl %v: want 0 to %v", opts.MinTTL, maxMinTTL)}
	}
	var tv tokenView
	var err error
	if opts.Server != "" {
		tv, err = brokerToken(ctx, opts)
	} else {
		if opts.Connection != "" {
			return usageError{errors.New("--connection goes with --server: a local profile is chosen with --profile")}
		}
		tv, err = localToken(ctx, ios, opts)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(ios.Out, tv)
	}
	_, err = fmt.Fprintln(ios.Out, tv.AccessToken)
	return err
}

func localToken(ctx context.Context, ios *IOStreams, opts *tokenOptions) (tokenView, error) {
	name := opts.local.Profile
	if err := validateProfile(name); err != nil {
		return tokenView{}, err
	}
	if opts.AccountsURL != "" {
		if _, err := parseHTTPURL("--accounts-url", opts.AccountsURL); err != nil {
			return tokenView{}, usageError{err}
		}
	}
	store, err := opts.local.openLocal(ctx, ios, false)
	if err != nil {
		return tokenView{}, err
	}
	if store == nil {
		return tokenView{}, noProfile(name)
	}
	defer store.Close()
	accountsURL := opts.AccountsURL
	if accountsURL == "" {
		e, err := profileEndpoints(ctx, store, name)
		if err != nil {
			return tokenView{}, err
		}
		accountsURL = defaultAccountsURL
		if e != nil {
			accountsURL = e.AccountsURL
		}
	}
	rec := &recordingRefresher{Refresher: spotifyRefresher(accountsURL)}
	engine, err := refresh.New(refresh.Config{Store: store, Refresher: rec})
	if err != nil {
		return tokenView{}, err
	}
	key := profileKey(name)
	at, err := engine.Token(ctx, key, opts.MinTTL)
	switch {
	case errors.Is(err, spotoken.ErrNotFound):
		return tokenView{}, noProfile(name)
	case errors.Is(err, spotoken.ErrNeedsReauth):
		return tokenView{}, needsLoginError{fmt.Errorf("profile %q needs a new login: Spotify refused its grant (revoked on the account page, or expired); %s", name, loginHint(name))}
	case err != nil:
		if last := rec.lastError(); last != nil {
			return tokenView{}, fmt.Errorf("get a token for profile %q: %w (refreshing at %s: %v)", name, err, accountsURL, last)
		}
		return tokenView{}, fmt.Errorf("get a token for profile %q: %w", name, err)
	}
	// The engine serves a token that is still valid, if for less than
	// asked, when it cannot refresh: right for a broker's callers, wrong
	// for a script that asked for --min-ttl.
	if now := time.Now(); !at.Valid(now, opts.MinTTL) {
		return tokenView{}, shortTokenError(ctx, store, name, opts.MinTTL, accountsURL, at, rec, now)
	}
	return tokenView{AccessToken: at.Token.Reveal(), ExpiresAt: at.Expiry.UTC(), Scope: at.Scopes.String()}, nil
}

// spotifyRefresher refreshes tokens at the accounts service at accountsURL.
func spotifyRefresher(accountsURL string) *refresh.SpotifyRefresher {
	return &refresh.SpotifyRefresher{
		TokenURL:   strings.TrimSuffix(accountsURL, "/") + "/api/token",
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
	}
}

// shortTokenError says why the profile has no token valid for minTTL: the
// refresh failed, Spotify's fresh tokens live less than minTTL, or an
// earlier failure holds refreshing back.
func shortTokenError(ctx context.Context, store spotoken.ConnectionStore, name string, minTTL time.Duration, accountsURL string,
	at refresh.AccessToken, rec *recordingRefresher, now time.Time) error {
	left := "has expired"
	if d := at.Expiry.Sub(now); d > 0 {
		left = "expires in " + d.Round(time.Second).String()
	}
	prefix := fmt.Sprintf("profile %q has no token valid for --min-ttl %v", name, minTTL)
	calls, last := rec.outcome()
	switch {
	case last != nil:
		return fmt.Errorf("%s: refreshing at %s failed: %v; the current token %s", prefix, accountsURL, last, left)
	case calls > 0:
		return fmt.Errorf("%s: the accounts service at %s gave a new token that %s; ask for a shorter --min-ttl", prefix, accountsURL, left)
	}
	why := "it could not be refreshed"
	if c, err := store.Connection(ctx, profileKey(name)); err == nil && c.NextAttemptAt.After(now) {
		why = fmt.Sprintf("refreshing is backing off after a failed attempt (%s) until %s; try again then", orDash(c.LastErrorCode), fmtTime(c.NextAttemptAt))
	}
	return fmt.Errorf("%s: the current token %s, and %s", prefix, left, why)
}

// recordingRefresher is a Refresher that remembers how many refreshes it
// was asked for and the last one's error, so token can say why it has no
// token valid for long enough.
type recordingRefresher struct {
	refresh.Refresher
	mu    sync.Mutex
	calls int
	last  error
}

// Refresh refreshes with the wrapped Refresher and records the outcome.
func (r *recordingRefresher) Refresh(ctx context.Context, app *spotoken.App, refreshToken spotoken.Secret) (*accounts.Grant, error) {
	g, err := r.Refresher.Refresh(ctx, app, refreshToken)
	r.mu.Lock()
	r.calls++
	r.last = err
	r.mu.Unlock()
	return g, err
}

func (r *recordingRefresher) outcome() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.last
}

func (r *recordingRefresher) lastError() error {
	_, err := r.outcome()
	return err
}

func brokerToken(ctx context.Context, opts *tokenOptions) (tokenView, error) {
	if opts.Connection == "" {
		return tokenView{}, usageError{errors.New("--server needs --connection: the id of the broker's connection")}
	}
	key := os.Getenv(envAPIKey)
	if key == "" {
		return tokenView{}, usageError{errors.New("--server needs the app's API key in $" + envAPIKey)}
	}
	c, err := client.New(opts.Server, key)
	if err != nil {
		return tokenView{}, usageError{fmt.Errorf("--server %q: %w", opts.Server, err)}
	}
	tok, err := c.Token(ctx, opts.Connection, client.MinTTL(opts.MinTTL))
	switch {
	case errors.Is(err, client.ErrNeedsReauth):
		// Not the connect link the broker sent: it is a bearer credential
		// for the user's authorization, and error output ends up in logs.
		return tokenView{}, needsLoginError{fmt.Errorf("connection %q needs the user to authorize again: mint a link for them with POST /v1/connect-sessions", opts.Connection)}
	case errors.Is(err, client.ErrNotFound):
		return tokenView{}, needsLoginError{fmt.Errorf("the broker has no connection %q: connect the user first", opts.Connection)}
	case err != nil:
		return tokenView{}, fmt.Errorf("ask the broker for a token: %w", err)
	}
	// The broker serves a token still valid for less than asked while it
	// cannot refresh; a script that asked for --min-ttl must not get it.
	if left := time.Until(tok.Expiry); left < opts.MinTTL {
		return tokenView{}, fmt.Errorf("the broker has no token for connection %q valid for --min-ttl %v: the one it has expires in %v, and it could not refresh it (see 'spotoken status --server' and the broker's logs)",
			opts.Connection, opts.MinTTL, max(left, 0).Round(time.Second))
	}
	return tokenView{AccessToken: tok.AccessToken, ExpiresAt: tok.Expiry.UTC(), Scope: spotoken.Scopes(client.Scopes(tok)).String()}, nil
}
