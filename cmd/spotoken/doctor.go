package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/internal/webapi"
	"github.com/spotoken/spotoken/server"
)

// spotoken doctor checks an app's setup against the accounts service and
// Web API it is pointed at, without a user: the client credentials, each
// registered redirect URI, the Web API's 401 for a token it does not know,
// and the app's scopes. Every check ends in a verdict; nothing secret (the
// client secret, a token, an authorization code) is ever printed.

// The verdicts of a doctor check.
const (
	verdictPass = "pass"
	verdictFail = "fail"
	verdictWarn = "warn" // could not tell: the detail says why
	verdictSkip = "skip" // does not apply to this app
)

// The checks.
const (
	checkClientCredentials = "client_credentials"
	checkRedirectURI       = "redirect_uri"
	checkWebAPI401         = "web_api_401"
	checkScopes            = "scopes"
)

// doctorCheck is one check's outcome.
type doctorCheck struct {
	Name    string `json:"name"`
	Target  string `json:"target,omitempty"` // the redirect URI checked
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
	// Seen is what the service answered, for people to compare over time:
	// status, message, headers. Never a token or a secret.
	Seen map[string]string `json:"seen,omitempty"`
}

// doctorReport is the whole outcome, as --json prints it.
type doctorReport struct {
	App         string        `json:"app,omitempty"`
	ClientID    string        `json:"client_id"`
	AccountsURL string        `json:"accounts_url"`
	APIURL      string        `json:"api_url"`
	OK          bool          `json:"ok"`
	Checks      []doctorCheck `json:"checks"`
}

type doctorOptions struct {
	store            storeOptions
	App              string
	ClientID         string
	RedirectURIs     []string
	Scopes           string
	ClientSecretIn   bool
	ClientSecretFile string
	AccountsURL      string
	APIURL           string
	Timeout          time.Duration
}

func newDoctorCmd(ios *IOStreams) *cobra.Command {
	opts := &doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor (--app NAME | --client-id ID --redirect-uri URI...) [flags]",
		Short: "Check an app's setup against Spotify (or the emulator), without a user",
		Long: `Check an app's setup against the accounts service and Web API it is pointed
at (Spotify's by default), without a user, and print a verdict per check:

  client_credentials  Spotify accepts the client id and secret (a
                      client-credentials request; skipped for a public app)
  redirect_uri        /authorize accepts each registered redirect URI: a
                      redirect or a login or consent page, where an
                      unregistered one gets Spotify's error page
                      ("INVALID_CLIENT: Invalid redirect URI")
  web_api_401         the Web API's 401 for a made-up token is one spotoken
                      reads as a rejected token, and so refreshes on; the
                      message and headers seen are printed, so a change at
                      Spotify shows the day it happens
  scopes              the app's default scopes are all scopes Spotify knows

The app is a registered one (--app, read from the database) or described by
flags (--client-id, --redirect-uri, --scopes, and the secret from standard
input or a file). Nothing secret is printed. Exit status 1 if a check fails.`,
		Example: `  spotoken doctor --app playlist-sync
  spotoken doctor --app playlist-sync --json
  spotoken doctor --client-id 0123abcd... --redirect-uri https://broker.example/callback --client-secret-file secret.txt
  spotoken doctor --app demo --accounts-url http://127.0.0.1:9999 --api-url http://127.0.0.1:9999`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return doctorRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.StringVar(&opts.App, "app", "", "check this registered app (its client id, secret, redirect URIs and default scopes)")
	f.StringVar(&opts.ClientID, "client-id", "", "without --app: the Spotify client ID to check")
	f.StringArrayVar(&opts.RedirectURIs, "redirect-uri", nil, "without --app: a redirect URI to check (repeatable)")
	f.StringVar(&opts.Scopes, "scopes", "", "without --app: scopes to check, separated by spaces or commas")
	f.BoolVar(&opts.ClientSecretIn, "client-secret-stdin", false, "without --app: read the client secret from standard input")
	f.StringVar(&opts.ClientSecretFile, "client-secret-file", "", "without --app: read the client secret from this file")
	f.StringVar(&opts.AccountsURL, "accounts-url", server.SpotifyAccountsURL, "the accounts service to check against")
	f.StringVar(&opts.APIURL, "api-url", server.SpotifyAPIURL, "the Web API to check against")
	f.DurationVar(&opts.Timeout, "timeout", 15*time.Second, "how long each request may take")
	return cmd
}

// doctorApp is what the doctor checks: an app and its scopes as given,
// unknown ones included.
type doctorApp struct {
	app    *spotoken.App
	scopes []string
}

func (o *doctorOptions) load(ctx context.Context, ios *IOStreams) (*doctorApp, error) {
	byFlags := o.ClientID != "" || len(o.RedirectURIs) > 0 || o.Scopes != "" || o.ClientSecretIn || o.ClientSecretFile != ""
	switch {
	case o.App != "" && byFlags:
		return nil, usageError{errors.New("give --app, or describe the app with --client-id and the other flags, not both")}
	case o.App == "" && !byFlags:
		return nil, usageError{errors.New("give --app NAME (a registered app) or --client-id ID with --redirect-uri URI")}
	case o.ClientSecretIn && o.ClientSecretFile != "":
		return nil, usageError{errors.New("give the client secret once: --client-secret-stdin or --client-secret-file, not both")}
	case o.Timeout <= 0:
		return nil, usageError{errors.New("--timeout must be positive")}
	}
	for flag, raw := range map[string]string{"--accounts-url": o.AccountsURL, "--api-url": o.APIURL} {
		if _, err := parseHTTPURL(flag, raw); err != nil {
			return nil, usageError{err}
		}
	}
	if o.App != "" {
		var d *doctorApp
		err := withStore(ctx, ios, &o.store, false, func(store spotoken.Store) error {
			app, err := findApp(ctx, store, o.App)
			if err != nil {
				return err
			}
			d = &doctorApp{app: app, scopes: app.DefaultScopes}
			return nil
		})
		return d, err
	}
	if err := validateClientID(o.ClientID); err != nil {
		return nil, usageError{err}
	}
	if len(o.RedirectURIs) == 0 {
		return nil, usageError{errors.New("--redirect-uri is required with --client-id: the redirect URIs to check")}
	}
	app := &spotoken.App{ClientID: o.ClientID, RedirectURIs: o.RedirectURIs}
	var err error
	switch {
	case o.ClientSecretIn:
		app.ClientSecret, err = readSecret(ios.In, "standard input")
	case o.ClientSecretFile != "":
		f, ferr := os.Open(o.ClientSecretFile)
		if ferr != nil {
			return nil, usageError{fmt.Errorf("--client-secret-file: %w", ferr)}
		}
		app.ClientSecret, err = readSecret(f, o.ClientSecretFile)
		f.Close()
	}
	if err != nil {
		return nil, err
	}
	// Unknown scopes are the scopes check's finding, not a usage error.
	return &doctorApp{app: app, scopes: strings.FieldsFunc(o.Scopes, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })}, nil
}

func doctorRun(ctx context.Context, ios *IOStreams, opts *doctorOptions, asJSON bool) error {
	d, err := opts.load(ctx, ios)
	if err != nil {
		return err
	}
	doc := &doctor{
		accounts: strings.TrimRight(opts.AccountsURL, "/"), api: strings.TrimRight(opts.APIURL, "/"),
		http: &http.Client{Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	report := doc.run(ctx, d)
	report.App = d.app.ID
	if asJSON {
		if err := writeJSON(ios.Out, report); err != nil {
			return err
		}
	} else {
		printDoctor(ios.Out, report)
	}
	if !report.OK {
		return errors.New("the app's setup has problems: see the failed checks")
	}
	return nil
}

// doctor runs the checks against one accounts service and Web API.
type doctor struct {
	accounts, api string
	http          *http.Client
}

func (doc *doctor) run(ctx context.Context, d *doctorApp) doctorReport {
	r := doctorReport{ClientID: d.app.ClientID, AccountsURL: doc.accounts, APIURL: doc.api}
	r.Checks = append(r.Checks, doc.clientCredentials(ctx, d.app))
	redirects, accepted := doc.redirectURIs(ctx, d.app)
	r.Checks = append(r.Checks, redirects...)
	r.Checks = append(r.Checks, doc.webAPI401(ctx))
	r.Checks = append(r.Checks, doc.scopes(ctx, d, accepted))
	r.OK = !slices.ContainsFunc(r.Checks, func(c doctorCheck) bool { return c.Verdict == verdictFail })
	return r
}

// clientCredentials asks for an app token with the client id and secret.
// Only the answer's status and OAuth error code decide.
func (doc *doctor) clientCredentials(ctx context.Context, app *spotoken.App) doctorCheck {
	c := doctorCheck{Name: checkClientCredentials}
	if app.ClientSecret == "" {
		c.Verdict, c.Detail = verdictSkip, "a public (PKCE) app has no client secret; its client id is checked with the redirect URIs"
		return c
	}
	ac := accounts.New(accounts.Config{ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		TokenURL: doc.accounts + "/api/token", HTTPClient: doc.http})
	_, err := ac.ClientCredentials(ctx)
	var ae *accounts.Error
	switch {
	case err == nil:
		c.Verdict, c.Detail = verdictPass, "the accounts service accepted the client id and secret (a client-credentials request)"
	case errors.As(err, &ae) && ae.InvalidClient():
		c.Verdict = verdictFail
		c.Detail = "the accounts service refused the client id or secret (invalid_client): copy both again from the app's settings in Spotify's developer dashboard"
		c.Seen = map[string]string{"status": fmt.Sprint(ae.Status), "error": ae.Code, "error_description": ae.Description}
	case errors.As(err, &ae):
		c.Verdict, c.Detail = verdictWarn, "the accounts service did not answer with a token or invalid_client; try again later"
		c.Seen = map[string]string{"status": fmt.Sprint(ae.Status), "error": ae.Code, "error_description": ae.Description}
	default:
		c.Verdict, c.Detail = verdictWarn, "the accounts service could not be asked: "+safeText(err.Error(), 200)
	}
	return c
}

// unregisteredRedirect is a redirect URI no app can have registered: the
// .invalid top-level domain is reserved (RFC 2606).
const unregisteredRedirect = "https://spotoken-doctor.invalid/callback"

// authorizeAnswer is how /authorize answered: accepted, refused, or
// neither (unknown), with what was seen.
type authorizeAnswer struct {
	verdict string // "accepted", "refused" or "unknown"
	seen    map[string]string
}

// authorize asks /authorize, without following redirects, to start an
// authorization for redirectURI with scopes, as spotoken's connect links do
// (PKCE, a state), and reads the answer by what is robust:
//
//   - a redirect is acceptance: Spotify never redirects a configuration
//     error (an unknown client, an unregistered redirect URI, an illegal
//     scope), since it must not send a browser to an unregistered URI; it
//     redirects to its login page, or back to the URI;
//   - a 4xx is refusal: its error page;
//   - a 200 is a page: an error page when it names one of Spotify's
//     configuration errors (INVALID_CLIENT, Illegal scope, Missing required
//     parameter), a login or consent page when it has a form, else unknown.
//
// Only a page's words decide, and only for a 200; the caller confirms the
// reading with a redirect URI that cannot be registered.
func (doc *doctor) authorize(ctx context.Context, clientID, redirectURI string, scopes []string) authorizeAnswer {
	verifier := accounts.GenerateVerifier()
	state := make([]byte, 12)
	rand.Read(state)
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {redirectURI},
		"state": {base64.RawURLEncoding.EncodeToString(state)}, "code_challenge_method": {"S256"},
		"code_challenge": {accounts.S256Challenge(verifier)}}
	if len(scopes) > 0 {
		q.Set("scope", strings.Join(scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, doc.accounts+"/authorize?"+q.Encode(), nil)
	if err != nil {
		return authorizeAnswer{verdict: "unknown", seen: map[string]string{"error": safeText(err.Error(), 200)}}
	}
	resp, err := doc.http.Do(req)
	if err != nil {
		return authorizeAnswer{verdict: "unknown", seen: map[string]string{"error": safeText(transportError(err), 200)}}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	seen := map[string]string{"status": fmt.Sprint(resp.StatusCode)}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// The query is left out: it may hold an authorization code.
		if loc, err := url.Parse(resp.Header.Get("Location")); err == nil {
			loc.RawQuery, loc.Fragment, loc.User = "", "", nil
			seen["location"] = loc.String()
		}
		return authorizeAnswer{verdict: "accepted", seen: seen}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		seen["page"] = pageText(body)
		return authorizeAnswer{verdict: "refused", seen: seen}
	case resp.StatusCode == http.StatusOK:
		seen["page"] = pageText(body)
		switch {
		case configErrorPage.Match(body):
			return authorizeAnswer{verdict: "refused", seen: seen}
		case htmlForm.Match(body):
			return authorizeAnswer{verdict: "accepted", seen: seen}
		}
	}
	return authorizeAnswer{verdict: "unknown", seen: seen}
}

var (
	configErrorPage = regexp.MustCompile(`INVALID_CLIENT|Illegal scope|Missing required parameter`)
	htmlForm        = regexp.MustCompile(`(?i)<form[\s>]`)
)

// redirectURIs checks each registered redirect URI, after a URI that
// cannot be registered: only when that one is refused does acceptance of
// the others mean anything. It returns the first accepted URI too.
func (doc *doctor) redirectURIs(ctx context.Context, app *spotoken.App) ([]doctorCheck, string) {
	baseline := doc.authorize(ctx, app.ClientID, unregisteredRedirect, nil)
	var out []doctorCheck
	accepted := ""
	for _, uri := range app.RedirectURIs {
		a := doc.authorize(ctx, app.ClientID, uri, nil)
		c := doctorCheck{Name: checkRedirectURI, Target: uri, Seen: a.seen}
		switch {
		case baseline.verdict != "refused":
			c.Verdict = verdictWarn
			c.Detail = fmt.Sprintf("cannot tell: /authorize did not refuse a redirect URI that cannot be registered (%s, %s), so its answer here (%s) proves nothing",
				unregisteredRedirect, describeAnswer(baseline), a.verdict)
		case a.verdict == "accepted":
			c.Verdict, c.Detail = verdictPass, "/authorize accepts it (a redirect or a login page, where an unregistered URI gets an error page)"
			delete(c.Seen, "page")
			if accepted == "" {
				accepted = uri
			}
		case a.verdict == "refused":
			c.Verdict = verdictFail
			c.Detail = "/authorize refuses it: register exactly this URI (scheme, host, port, path and trailing slash count) in the app's settings in Spotify's developer dashboard; an unknown client id is refused the same way"
		default:
			c.Verdict, c.Detail = verdictWarn, "cannot tell: /authorize answered neither a redirect, a login page nor an error page"
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		out = append(out, doctorCheck{Name: checkRedirectURI, Verdict: verdictFail, Detail: "the app has no redirect URI"})
	}
	return out, accepted
}

func describeAnswer(a authorizeAnswer) string {
	if a.seen["status"] == "" {
		return a.verdict
	}
	return a.verdict + ", status " + a.seen["status"]
}

// Spotify's 401 messages by era (SPOTIFY.md), only to name what was seen
// for people: the verdict is webapi.Classify's, which reads no wording.
var known401 = map[string]string{
	"Missing/invalid/expired access token": "Spotify's wording since 2026-07",
	"Invalid access token":                 "Spotify's wording before 2026-07",
	"The access token expired":             "Spotify's wording before 2026-07",
	"No token provided":                    "Spotify's wording before 2026-07",
}

// webAPI401 sends a made-up token to GET /v1/me and asks the classifier
// that the proxy and the SDK use how it reads the answer.
func (doc *doctor) webAPI401(ctx context.Context) doctorCheck {
	c := doctorCheck{Name: checkWebAPI401}
	tok := make([]byte, 48)
	rand.Read(tok)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, doc.api+"/v1/me", nil)
	if err != nil {
		c.Verdict, c.Detail = verdictWarn, safeText(err.Error(), 200)
		return c
	}
	req.Header.Set("Authorization", "Bearer BQ"+base64.RawURLEncoding.EncodeToString(tok))
	resp, err := doc.http.Do(req)
	if err != nil {
		c.Verdict, c.Detail = verdictWarn, "the Web API could not be asked: "+safeText(transportError(err), 200)
		return c
	}
	defer resp.Body.Close()
	verdict := webapi.Classify(resp)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, webapi.MaxRejectionBody))
	msg, isObject := webapi.Message(body)
	c.Seen = map[string]string{"status": fmt.Sprint(resp.StatusCode),
		"www_authenticate": orDash(strings.Join(resp.Header.Values("WWW-Authenticate"), ", ")),
		"content_type":     orDash(resp.Header.Get("Content-Type"))}
	if isObject {
		c.Seen["message"] = safeText(msg, 200)
		if era := known401[msg]; era != "" {
			c.Seen["wording"] = era
		} else {
			c.Seen["wording"] = "not one spotoken has seen"
		}
	} else {
		c.Seen["body"] = safeText(string(body), 200)
	}
	switch verdict {
	case webapi.RejectedToken:
		c.Verdict, c.Detail = verdictPass, "GET /v1/me with a made-up token answers 401, which spotoken reads as a rejected token: the proxy and the SDK refresh and retry once"
	case webapi.PermissionsMissing:
		c.Verdict, c.Detail = verdictFail, "GET /v1/me with a made-up token answers 401 Permissions missing, which spotoken reads as a missing scope: it would not refresh"
	default:
		c.Verdict, c.Detail = verdictFail, fmt.Sprintf("GET /v1/me with a made-up token answers %d, not 401: spotoken refreshes only on a 401", resp.StatusCode)
	}
	return c
}

// scopes checks the app's scopes against the scopes Spotify defines and,
// when a redirect URI was accepted, asks /authorize with them.
func (doc *doctor) scopes(ctx context.Context, d *doctorApp, acceptedURI string) doctorCheck {
	c := doctorCheck{Name: checkScopes}
	if len(d.scopes) == 0 {
		c.Verdict, c.Detail = verdictPass, "the app has no default scopes (connect sessions name their own)"
		return c
	}
	var unknown []string
	for _, s := range d.scopes {
		if _, ok := slices.BinarySearch(spotifyScopes, s); !ok {
			unknown = append(unknown, s)
		}
	}
	if len(unknown) > 0 {
		c.Verdict = verdictFail
		c.Detail = fmt.Sprintf("not scopes Spotify knows: %s (Spotify's /authorize shows \"Illegal scope\" for them)", strings.Join(unknown, " "))
		return c
	}
	if acceptedURI == "" {
		c.Verdict, c.Detail = verdictPass, strings.Join(d.scopes, " ")+": all known to Spotify (not asked at /authorize: no redirect URI was accepted)"
		return c
	}
	a := doc.authorize(ctx, d.app.ClientID, acceptedURI, d.scopes)
	c.Seen = a.seen
	switch a.verdict {
	case "accepted":
		c.Verdict, c.Detail = verdictPass, strings.Join(d.scopes, " ")+": all known to Spotify, and /authorize accepts them"
		delete(c.Seen, "page")
	case "refused":
		c.Verdict, c.Detail = verdictFail, strings.Join(d.scopes, " ")+": /authorize refuses them, although it accepts the redirect URI without them"
	default:
		c.Verdict, c.Detail = verdictWarn, strings.Join(d.scopes, " ")+": all known to Spotify; /authorize's answer with them was unclear"
	}
	return c
}

var (
	htmlHidden = regexp.MustCompile(`(?is)<(script|style|title|head)\b.*?</(script|style|title|head)>`)
	htmlTag    = regexp.MustCompile(`<[^>]*>`)
)

// pageText is the visible text of an HTML page, short, on one line.
func pageText(body []byte) string {
	s := htmlHidden.ReplaceAllString(string(body), " ")
	s = htmlTag.ReplaceAllString(s, " ")
	return safeText(strings.Join(strings.Fields(s), " "), 200)
}

// safeText makes a string from a server safe to print: printable, short.
func safeText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

// transportError describes a request error without its URL, whose query
// could hold anything.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

func printDoctor(w io.Writer, r doctorReport) {
	who := "client id " + r.ClientID
	if r.App != "" {
		who = "app " + r.App + " (" + who + ")"
	}
	fmt.Fprintf(w, "Checking %s against %s and %s\n\n", who, r.AccountsURL, r.APIURL)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	failed := 0
	for _, c := range r.Checks {
		name := c.Name
		if c.Target != "" {
			name += " " + c.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(c.Verdict), name, c.Detail)
		for _, k := range slices.Sorted(maps.Keys(c.Seen)) {
			fmt.Fprintf(tw, "\t\tseen %s: %s\n", k, c.Seen[k])
		}
		if c.Verdict == verdictFail {
			failed++
		}
	}
	tw.Flush()
	switch failed {
	case 0:
		fmt.Fprintln(w, "\nNo check failed.")
	case 1:
		fmt.Fprintln(w, "\n1 check failed.")
	default:
		fmt.Fprintf(w, "\n%d checks failed.\n", failed)
	}
}
