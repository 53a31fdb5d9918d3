package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/server"
)

// The environment variables login reads besides SPOTOKEN_<FLAG>.
const (
	envClientID     = "SPOTIFY_CLIENT_ID"
	envClientSecret = "SPOTIFY_CLIENT_SECRET"
	envBrowser      = "BROWSER"
)

type loginOptions struct {
	local       localOptions
	ClientID    string
	SecretStdin bool
	Scopes      string
	ScopesSet   bool // --scopes was given (or $SPOTOKEN_SCOPES)
	Port        int
	NoBrowser   bool
	Timeout     time.Duration
	AccountsURL string
	APIURL      string
}

func newLoginCmd(ios *IOStreams) *cobra.Command {
	opts := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login [--profile P] [--client-id ID] [--scopes S] [flags]",
		Short: "Log in to Spotify in the browser and keep the grant under a profile",
		Long: `Log in to Spotify for personal use on this machine: Authorization Code with
PKCE on a loopback redirect (RFC 8252). login listens on 127.0.0.1, opens the
browser at Spotify's consent page (or prints the URL: with --no-browser, or
when no browser can be started), checks the state parameter of the answer,
exchanges the code, asks Spotify who logged in (/v1/me) and keeps the grant,
sealed, in the local database under --profile. Then 'spotoken token' prints
a fresh access token whenever you need one.

The Spotify app is yours: create one on Spotify's developer dashboard and
register the redirect URI http://127.0.0.1/callback in its settings. A
loopback URI registered without a port matches any port, so login can use
any free port (--port 0, the default); if you registered a port, pass it as
--port. Spotify refuses http://localhost.

The client ID comes from --client-id or $SPOTIFY_CLIENT_ID. A public app
needs no secret (PKCE); a client secret, if you use one, is read from
$SPOTIFY_CLIENT_SECRET or standard input (--client-secret-stdin), never from
the command line, and stored sealed with the profile.

--scopes are Spotify's scope names, separated by spaces or commas; an unknown
one is refused with the list of valid ones. They are required for a new
profile (there is no sensible default: ask for what your scripts use), and
--scopes none asks for none (public data and the user's id only). Logging in
again to an existing profile without --scopes asks for the scopes it asked
for last time. Spotify may grant fewer than asked: login prints what was
granted.

The profile remembers the accounts service and Web API it logged in with
(--accounts-url, --api-url; Spotify's by default), so 'spotoken token' and
'spotoken status' need neither flag afterwards.

Nothing is stored unless the login completes: denying consent, --timeout or
Ctrl-C leave the profile as it was. Logging in again to a profile replaces
its grant. Spotify's grants expire six months after consent; 'spotoken
status' shows when.`,
		Example: `  export SPOTIFY_CLIENT_ID=0123abcd...
  spotoken login --scopes "user-read-currently-playing user-top-read"
  spotoken login --profile work --scopes none --no-browser --port 8888
  curl -H "Authorization: Bearer $(spotoken token)" https://api.spotify.com/v1/me`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.ScopesSet = cmd.Flags().Changed("scopes")
			return loginRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	f := cmd.Flags()
	opts.local.addFlags(f)
	f.StringVar(&opts.ClientID, "client-id", "", "the Spotify app's client ID (default: $"+envClientID+")")
	f.BoolVar(&opts.SecretStdin, "client-secret-stdin", false, "read the app's client secret from standard input (else $"+envClientSecret+"; none: a public PKCE client)")
	f.StringVar(&opts.Scopes, "scopes", "", `Spotify scopes to ask for, separated by spaces or commas, e.g. "user-read-private,user-top-read"; "none" for none (required for a new profile; default for an existing one: the scopes it asked for last)`)
	f.IntVar(&opts.Port, "port", 0, "the loopback port of the redirect URI http://127.0.0.1:PORT/callback; 0 picks a free one")
	f.BoolVar(&opts.NoBrowser, "no-browser", false, "print the URL to open instead of starting a browser")
	f.DurationVar(&opts.Timeout, "timeout", 5*time.Minute, "give up when the login has not completed after this long")
	f.StringVar(&opts.AccountsURL, "accounts-url", defaultAccountsURL, "Spotify's accounts service (tests and the emulator point it elsewhere)")
	f.StringVar(&opts.APIURL, "api-url", defaultAPIURL, "Spotify's Web API")
	return cmd
}

// check validates the options; its errors are usage errors.
func (o *loginOptions) check() (spotoken.Scopes, error) {
	if err := validateProfile(o.local.Profile); err != nil {
		return nil, err
	}
	if o.ClientID == "" {
		o.ClientID = os.Getenv(envClientID)
	}
	if o.ClientID == "" {
		return nil, usageError{errors.New("--client-id is required (or set " + envClientID + "): the client ID of your app on Spotify's developer dashboard")}
	}
	if err := validateClientID(o.ClientID); err != nil {
		return nil, usageError{err}
	}
	var scopes spotoken.Scopes
	if o.ScopesSet && strings.TrimSpace(o.Scopes) != "none" {
		var err error
		if scopes, err = parseScopes(o.Scopes); err != nil {
			return nil, usageError{fmt.Errorf("--scopes: %w", err)}
		}
		if len(scopes) == 0 {
			return nil, usageError{errors.New(`--scopes is empty: name the scopes to ask for, or "none" for none`)}
		}
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, usageError{fmt.Errorf("--port %d: want 0 (any free port) to 65535", o.Port)}
	}
	if o.Timeout <= 0 {
		return nil, usageError{fmt.Errorf("--timeout %v: want a positive duration such as 5m", o.Timeout)}
	}
	for _, u := range []struct{ flag, raw string }{{"--accounts-url", o.AccountsURL}, {"--api-url", o.APIURL}} {
		if _, err := parseHTTPURL(u.flag, u.raw); err != nil {
			return nil, usageError{err}
		}
	}
	return scopes, nil
}

// scopesRequired is the usage error of a first login without --scopes.
func scopesRequired(profile string) error {
	return usageError{fmt.Errorf(`--scopes is required for a new profile (%q): the Spotify scopes to ask for, e.g. --scopes "user-read-private user-top-read", or --scopes none for none`, profile)}
}

// previousScopes returns the scopes the existing profile asked for when it
// logged in last; a usage error if there is no such profile. It creates
// nothing.
func (o *loginOptions) previousScopes(ctx context.Context, ios *IOStreams) (spotoken.Scopes, error) {
	store, err := o.local.openLocal(ctx, ios, true)
	if err != nil {
		return nil, err
	}
	if store == nil {
		return nil, scopesRequired(o.local.Profile)
	}
	defer store.Close()
	app, err := store.App(ctx, profileKey(o.local.Profile).AppID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, scopesRequired(o.local.Profile)
	}
	if err != nil {
		return nil, fmt.Errorf("read profile %q: %w", o.local.Profile, err)
	}
	return app.DefaultScopes, nil
}

// clientSecret reads the client secret: standard input with
// --client-secret-stdin, else $SPOTIFY_CLIENT_SECRET, else none.
func (o *loginOptions) clientSecret(ios *IOStreams) (spotoken.Secret, error) {
	if o.SecretStdin {
		return readSecret(ios.In, "standard input")
	}
	s := os.Getenv(envClientSecret)
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "", usageError{errors.New(envClientSecret + " holds spaces or control characters; give the secret alone")}
	}
	return spotoken.Secret(s), nil
}

// callback is what the browser brought back to the redirect URI.
type callback struct {
	code             string
	errCode, errDesc string
	// done receives the login's outcome, for the page the browser shows.
	done chan error
}

func loginRun(ctx context.Context, ios *IOStreams, opts *loginOptions, asJSON bool) error {
	scopes, err := opts.check()
	if err != nil {
		return err
	}
	if !opts.ScopesSet {
		if scopes, err = opts.previousScopes(ctx, ios); err != nil {
			return err
		}
	}
	secret, err := opts.clientSecret(ios)
	if err != nil {
		return err
	}
	store, err := opts.local.store.openStore(ctx, adminLogger(ios), true)
	if err != nil {
		return err
	}
	defer store.Close()

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", opts.Port))
	if err != nil {
		return fmt.Errorf("listen for Spotify's redirect on 127.0.0.1:%d: %w (choose another --port)", opts.Port, err)
	}
	redirectURI := fmt.Sprintf("http://127.0.0.1:%d/callback", ln.Addr().(*net.TCPAddr).Port)
	accountsURL := strings.TrimSuffix(opts.AccountsURL, "/")
	acc := accounts.New(accounts.Config{ClientID: opts.ClientID, ClientSecret: secret,
		AuthURL: accountsURL + "/authorize", TokenURL: accountsURL + "/api/token"})
	state := randomState()
	verifier := accounts.GenerateVerifier()
	authURL := acc.AuthCodeURL(state, redirectURI, scopes, verifier, false)

	results, quit := make(chan callback, 1), make(chan struct{})
	srv := &http.Server{Handler: callbackHandler(state, results, quit), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer func() {
		close(quit)
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()

	fmt.Fprintf(ios.Err, "Spotify will send the browser back to %s: register http://127.0.0.1/callback (any port) in your app's settings on Spotify's developer dashboard.\n", redirectURI)
	switch {
	case opts.NoBrowser:
		fmt.Fprintf(ios.Err, "Open this URL in a browser to log in to Spotify:\n\n  %s\n\n", authURL)
	default:
		if err := openBrowser(authURL); err != nil {
			fmt.Fprintf(ios.Err, "Could not start a browser (%v).\nOpen this URL in a browser to log in to Spotify:\n\n  %s\n\n", err, authURL)
		} else {
			fmt.Fprintf(ios.Err, "Opened a browser to log in to Spotify. If none appeared, open this URL:\n\n  %s\n\n", authURL)
		}
	}
	fmt.Fprintf(ios.Err, "Waiting for the login (up to %v)...\n", opts.Timeout)

	var cb callback
	select {
	case cb = <-results:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("login timed out after %v without an answer from the browser; nothing was stored (try again, or raise --timeout)", opts.Timeout)
		}
		return errors.New("login cancelled; nothing was stored")
	}
	p, err := completeLogin(ctx, store, opts, acc, cb, redirectURI, verifier, scopes, secret)
	cb.done <- err
	if err != nil {
		return err
	}
	return printLogin(ios, p, scopes, asJSON)
}

// completeLogin exchanges the code, reads the user and stores the profile.
func completeLogin(ctx context.Context, store spotoken.Store, opts *loginOptions, acc *accounts.Client, cb callback,
	redirectURI, verifier string, scopes spotoken.Scopes, secret spotoken.Secret) (profile, error) {
	switch {
	case cb.errCode == "access_denied":
		return profile{}, errors.New("access was denied in the browser (access_denied): nothing was stored")
	case cb.errCode != "":
		msg := "Spotify refused the authorization: " + cb.errCode
		if cb.errDesc != "" {
			msg += ": " + cb.errDesc
		}
		return profile{}, errors.New(msg + "; nothing was stored")
	}
	grant, err := acc.Exchange(ctx, cb.code, redirectURI, verifier)
	if err != nil {
		var ae *accounts.Error
		if errors.As(err, &ae) && ae.InvalidClient() {
			return profile{}, fmt.Errorf("exchange the authorization code: %w (check the client ID and secret); nothing was stored", err)
		}
		return profile{}, fmt.Errorf("exchange the authorization code: %w; nothing was stored", err)
	}
	me, err := fetchMe(ctx, opts.APIURL, grant.AccessToken)
	if err != nil {
		return profile{}, fmt.Errorf("%w; nothing was stored", err)
	}
	granted := grant.Scopes
	if granted == nil {
		granted = scopes
	}
	now := time.Now()
	name := opts.local.Profile
	key := profileKey(name)
	app := &spotoken.App{ID: key.AppID, ClientID: opts.ClientID, ClientSecret: secret,
		RedirectURIs: []string{redirectURI}, DefaultScopes: scopes}
	endpoints := spotoken.Endpoints{AccountsURL: strings.TrimRight(opts.AccountsURL, "/"), APIURL: strings.TrimRight(opts.APIURL, "/")}
	conn := &spotoken.Connection{AppID: key.AppID, ID: key.ID, CreatedAt: now,
		SpotifyUserID: me.ID, DisplayName: me.DisplayName, Scopes: granted, State: spotoken.StateActive,
		Token: grant.Token(), ConsentedAt: now, GrantExpiresAt: now.Add(server.DefaultGrantLifetime)}
	// The grant is Spotify's now: store it even if the user presses Ctrl-C
	// meanwhile, in one short step that is rolled back if it fails halfway.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer scancel()
	if err := saveProfile(sctx, store, app, endpoints, conn); err != nil {
		return profile{}, fmt.Errorf("store profile %q: %w", name, err)
	}
	return newProfile(app, &endpoints, conn), nil
}

// saveProfile creates or replaces the profile's app, its endpoints and its
// connection. If the endpoints or the connection cannot be written, the app
// and its endpoints are put back as they were.
func saveProfile(ctx context.Context, store spotoken.Store, app *spotoken.App, endpoints spotoken.Endpoints, conn *spotoken.Connection) error {
	oldEndpoints, endpointsErr := store.AppEndpoints(ctx, app.ID)
	old, err := store.App(ctx, app.ID)
	switch {
	case errors.Is(err, spotoken.ErrNotFound):
		old = nil
		if err := store.CreateApp(ctx, app); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if _, err := store.UpdateApp(ctx, app.ID, func(a *spotoken.App) error {
			a.ClientID, a.ClientSecret, a.RedirectURIs, a.DefaultScopes = app.ClientID, app.ClientSecret, app.RedirectURIs, app.DefaultScopes
			return nil
		}); err != nil {
			return err
		}
	}
	err = store.SetAppEndpoints(ctx, app.ID, endpoints)
	if err == nil {
		err = store.CreateConnection(ctx, conn)
	}
	if errors.Is(err, spotoken.ErrConflict) {
		_, err = store.UpdateConnection(ctx, conn.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.Token, c.Scopes, c.State = conn.Token, conn.Scopes, conn.State
			c.SpotifyUserID, c.DisplayName = conn.SpotifyUserID, conn.DisplayName
			c.ConsentedAt, c.GrantExpiresAt, c.ExpiryWarnedAt = conn.ConsentedAt, conn.GrantExpiresAt, time.Time{}
			c.LastErrorCode, c.ConsecutiveFailures, c.NextAttemptAt = "", 0, time.Time{}
			return nil, nil
		})
	}
	if err == nil {
		return nil
	}
	if old == nil {
		store.DeleteApp(ctx, app.ID)
	} else {
		store.UpdateApp(ctx, app.ID, func(a *spotoken.App) error {
			a.ClientID, a.ClientSecret, a.RedirectURIs, a.DefaultScopes = old.ClientID, old.ClientSecret, old.RedirectURIs, old.DefaultScopes
			return nil
		})
		if endpointsErr == nil {
			store.SetAppEndpoints(ctx, app.ID, oldEndpoints)
		}
	}
	return err
}

type spotifyUser struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
}

// fetchMe reads the logged-in user's id and display name from /v1/me.
func fetchMe(ctx context.Context, apiURL string, token spotoken.Secret) (*spotifyUser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(apiURL, "/")+"/v1/me", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask Spotify who logged in: GET /v1/me: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("ask Spotify who logged in: GET /v1/me: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask Spotify who logged in: GET /v1/me: HTTP %d", resp.StatusCode)
	}
	var me spotifyUser
	if err := json.Unmarshal(body, &me); err != nil || me.ID == "" {
		return nil, errors.New("ask Spotify who logged in: GET /v1/me: the answer has no user id")
	}
	return &me, nil
}

func printLogin(ios *IOStreams, p profile, asked spotoken.Scopes, asJSON bool) error {
	if missing := p.Scopes.Missing(asked); len(missing) > 0 {
		fmt.Fprintf(ios.Err, "warning: Spotify did not grant %s\n", missing)
	}
	if asJSON {
		return writeJSON(ios.Out, p)
	}
	who := p.SpotifyUserID
	if p.DisplayName != "" && p.DisplayName != p.SpotifyUserID {
		who = p.DisplayName + " (" + p.SpotifyUserID + ")"
	}
	fmt.Fprintf(ios.Out, "Logged in to Spotify as %s; profile %s.\n", who, p.Profile)
	fmt.Fprintf(ios.Out, "Scopes: %s\n", orDash(p.Scopes.String()))
	if p.GrantExpiresAt != nil {
		fmt.Fprintf(ios.Out, "The grant expires %s (Spotify's six months): log in again before then.\n", fmtTime(*p.GrantExpiresAt))
	}
	return nil
}

// callbackHandler serves the redirect URI: it hands the first answer whose
// state matches to results and shows the outcome to the browser.
func callbackHandler(state string, results chan<- callback, quit <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	taken := make(chan struct{}, 1)
	taken <- struct{}{}
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			loginPage(w, http.StatusBadRequest, "This is not the login spotoken started (the state does not match). Start again from the terminal.")
			return
		}
		cb := callback{code: q.Get("code"), errCode: q.Get("error"), errDesc: q.Get("error_description"), done: make(chan error, 1)}
		if cb.code == "" && cb.errCode == "" {
			loginPage(w, http.StatusBadRequest, "The answer has neither a code nor an error.")
			return
		}
		select {
		case <-taken:
		default:
			loginPage(w, http.StatusConflict, "This login has been answered already; see the terminal.")
			return
		}
		results <- cb
		select {
		case err := <-cb.done:
			if err != nil {
				loginPage(w, http.StatusBadRequest, "Login failed: "+err.Error()+". See the terminal.")
				return
			}
			loginPage(w, http.StatusOK, "Logged in. You can close this tab and go back to the terminal.")
		case <-quit:
			loginPage(w, http.StatusGone, "The login in the terminal has ended (timed out or cancelled). Start again from the terminal.")
		case <-r.Context().Done():
		}
	})
	return mux
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spotoken login</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto"><h1>spotoken</h1><p id="message">{{.}}</p></body></html>
`))

func loginPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	loginTemplate.Execute(w, msg)
}

// randomState is an unguessable OAuth state parameter (RFC 6749 §10.12).
func randomState() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// openBrowser starts a browser at url without waiting for it: $BROWSER
// (a command, given url as its last argument) if set, else the system's
// opener (xdg-open, open, or the URL handler on Windows).
func openBrowser(url string) error {
	var name string
	var args []string
	if b := strings.Fields(os.Getenv(envBrowser)); len(b) > 0 {
		name, args = b[0], b[1:]
	} else {
		switch runtime.GOOS {
		case "darwin":
			name = "open"
		case "windows":
			name, args = "rundll32", []string{"url.dll,FileProtocolHandler"}
		default:
			name = "xdg-open"
		}
	}
	cmd := exec.Command(name, append(args, url)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
