package emulator

import (
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// pendingConsent is an /authorize request waiting on the consent page.
type pendingConsent struct {
	clientID, redirectURI, state string
	scopes                       []string
	challenge                    string
	expiresAt                    time.Time
}

// consentTTL bounds how long a consent page stays answerable.
const consentTTL = 15 * time.Minute

// consentCookie remembers who logged in on the consent page, as Spotify's
// session does, so a later /authorize for scopes already granted skips the
// page unless show_dialog=true.
const consentCookie = "emulator_user"

var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// authRequest is a validated /authorize request.
type authRequest struct {
	client      *Client
	redirectURI string
	state       string
	scopes      []string
	challenge   string
}

func (e *Emulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	req, ok := e.parseAuthorize(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	auto := e.auto
	e.mu.Unlock()
	if auto != "" {
		e.approve(w, r, req, auto, req.scopes)
		return
	}
	if c, err := r.Cookie(consentCookie); err == nil && r.URL.Query().Get("show_dialog") != "true" && e.hasGrant(c.Value, req) {
		e.approve(w, r, req, c.Value, req.scopes)
		return
	}
	id := randomToken("", 18)
	e.mu.Lock()
	now := e.nowLocked()
	e.sweepLocked(now)
	e.pending[id] = &pendingConsent{clientID: req.client.ID, redirectURI: req.redirectURI, state: req.state,
		scopes: req.scopes, challenge: req.challenge, expiresAt: now.Add(consentTTL)}
	e.mu.Unlock()
	selected := ""
	if c, err := r.Cookie(consentCookie); err == nil {
		selected = c.Value
	}
	e.renderConsent(w, http.StatusOK, id, req.client.ID, req.redirectURI, req.scopes, selected, "")
}

// renderConsent shows the consent page for the pending request id, with an
// optional error from a previous attempt.
func (e *Emulator) renderConsent(w http.ResponseWriter, status int, id, clientID, redirectURI string, scopes []string, selected, problem string) {
	e.mu.Lock()
	users := make([]string, 0, len(e.users))
	for u := range e.users {
		users = append(users, u)
	}
	e.mu.Unlock()
	slices.Sort(users)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	consentTemplate.Execute(w, consentPage{ClientID: clientID, RedirectURI: redirectURI, Request: id,
		Users: users, Scopes: scopes, Selected: selected, Problem: problem})
}

// parseAuthorize validates an /authorize query the way Spotify does:
// configuration errors (client, redirect URI, scope) are shown on the
// emulator's own page and never redirect; request errors once the redirect
// URI is trusted are sent back to it (RFC 6749 §4.1.2.1).
func (e *Emulator) parseAuthorize(w http.ResponseWriter, r *http.Request) (authRequest, bool) {
	q := r.URL.Query()
	for _, p := range []string{"client_id", "redirect_uri"} {
		if q.Get(p) == "" {
			authorizeErrorPage(w, "Missing required parameter: "+p)
			return authRequest{}, false
		}
	}
	c := e.clients[q.Get("client_id")]
	if c == nil {
		authorizeErrorPage(w, "INVALID_CLIENT: Invalid client")
		return authRequest{}, false
	}
	redirect := q.Get("redirect_uri")
	if ru, err := url.Parse(redirect); err == nil && redirect != "" && insecureRedirect(ru) {
		authorizeErrorPage(w, "INVALID_CLIENT: Insecure redirect URI")
		return authRequest{}, false
	}
	if !slices.ContainsFunc(c.RedirectURIs, func(reg string) bool { return matchRedirect(reg, redirect) }) {
		authorizeErrorPage(w, "INVALID_CLIENT: Invalid redirect URI")
		return authRequest{}, false
	}
	var scopes []string
	for _, s := range strings.Fields(q.Get("scope")) {
		if !knownScope[s] {
			authorizeErrorPage(w, "Illegal scope")
			return authRequest{}, false
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	req := authRequest{client: c, redirectURI: redirect, state: q.Get("state"), scopes: scopes}
	fail := func(code, desc string) (authRequest, bool) {
		redirectWith(w, r, redirect, url.Values{"error": {code}, "error_description": {desc}}, req.state)
		return authRequest{}, false
	}
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		return fail("invalid_request", "response_type must be supplied")
	case "token":
		// The implicit grant, removed on 2025-11-27: its answers always
		// went in the fragment, and so does this refusal.
		params := url.Values{"error": {"unsupported_response_type"}}
		if req.state != "" {
			params.Set("state", req.state)
		}
		u, _ := url.Parse(redirect)
		u.Fragment, u.RawFragment = "", ""
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, u.String()+"#"+params.Encode(), http.StatusFound)
		return authRequest{}, false
	default:
		return fail("unsupported_response_type", "response_type must be code")
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return fail("invalid_request", "code_challenge must be supplied with code_challenge_method")
	case challenge != "" && method != "S256":
		return fail("invalid_request", "code_challenge_method must be S256")
	case challenge != "" && !validChallenge(challenge):
		return fail("invalid_request", "code_challenge must be 43 base64url characters (S256)")
	case challenge == "" && c.Secret == "":
		return fail("invalid_request", "code_challenge required: this client has no secret and must use PKCE")
	}
	req.challenge = challenge
	return req, true
}

func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

// hasGrant reports whether userID already granted req's client every scope it asks for.
func (e *Emulator) hasGrant(userID string, req authRequest) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.families[userID] {
		if f.clientID == req.client.ID && !f.revoked && isSubset(req.scopes, f.scopes) {
			return true
		}
	}
	return false
}

func isSubset(want, have []string) bool {
	for _, s := range want {
		if !slices.Contains(have, s) {
			return false
		}
	}
	return true
}

// approve mints a code for userID and redirects back to the app.
func (e *Emulator) approve(w http.ResponseWriter, r *http.Request, req authRequest, userID string, granted []string) {
	code := randomToken("AQ", 64)
	e.mu.Lock()
	e.ensureUserLocked(userID)
	now := e.nowLocked()
	e.sweepLocked(now)
	e.codes[code] = &authCode{clientID: req.client.ID, userID: userID, redirectURI: req.redirectURI, scopes: granted,
		challenge: req.challenge, consentedAt: now, expiresAt: now.Add(e.cfg.CodeTTL)}
	e.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: consentCookie, Value: userID, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	redirectWith(w, r, req.redirectURI, url.Values{"code": {code}}, req.state)
}

func (e *Emulator) handleConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		authorizeErrorPage(w, "Malformed consent form")
		return
	}
	id := r.PostForm.Get("request")
	agree := r.PostForm.Get("action") == "agree"
	userID := strings.TrimSpace(r.PostForm.Get("new_user"))
	if userID == "" {
		userID = r.PostForm.Get("user")
	}
	e.mu.Lock()
	p := e.pending[id]
	expired := p != nil && e.nowLocked().After(p.expiresAt)
	fixable := p != nil && !expired && agree && !userIDPattern.MatchString(userID)
	if p != nil && !fixable {
		delete(e.pending, id) // a consent page answers once
	}
	e.mu.Unlock()
	if p == nil || expired {
		authorizeErrorPage(w, "This authorization request is unknown, used or expired; start again from the app")
		return
	}
	if fixable {
		// A mistake on the form does not use up the request: show it again.
		e.renderConsent(w, http.StatusBadRequest, id, p.clientID, p.redirectURI, p.scopes, "",
			"Pick a user, or type a new user id (letters, digits, . _ -).")
		return
	}
	req := authRequest{client: e.clients[p.clientID], redirectURI: p.redirectURI, state: p.state, scopes: p.scopes, challenge: p.challenge}
	if !agree {
		redirectWith(w, r, p.redirectURI, url.Values{"error": {"access_denied"}}, p.state)
		return
	}
	// The person may untick scopes: Spotify's scope answer may list fewer
	// than were requested.
	granted := []string{}
	for _, s := range p.scopes {
		if slices.Contains(r.PostForm["scope"], s) {
			granted = append(granted, s)
		}
	}
	e.approve(w, r, req, userID, granted)
}

func redirectWith(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, _ := url.Parse(redirectURI) // validated against the registration already
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func authorizeErrorPage(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	errorTemplate.Execute(w, message)
}

type consentPage struct {
	ClientID, RedirectURI, Request, Selected, Problem string
	Users, Scopes                                     []string
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Spotify emulator: authorize {{.ClientID}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;background:#121212;color:#fff;max-width:32rem;margin:3rem auto;padding:0 1rem}
h1{font-size:1.4rem} .box{background:#242424;border-radius:8px;padding:1rem 1.5rem;margin:1rem 0}
label{display:block;margin:.4rem 0} button{font-size:1rem;border:0;border-radius:2rem;padding:.7rem 2rem;margin-right:1rem;cursor:pointer}
#agree{background:#1ed760;color:#000;font-weight:bold} #cancel{background:transparent;color:#fff;border:1px solid #888}
small{color:#aaa}
</style></head>
<body>
<h1>Spotify emulator</h1>
<p><b>{{.ClientID}}</b> wants to access your account. After you agree you will be sent to <small>{{.RedirectURI}}</small>.</p>
{{if .Problem}}<p id="problem" role="alert" style="background:#e91429;padding:.6rem 1rem;border-radius:4px">{{.Problem}}</p>{{end}}
<form method="post" action="/authorize/consent">
<input type="hidden" name="request" value="{{.Request}}">
<div class="box"><p>Log in as</p>
{{range .Users}}<label><input type="radio" name="user" value="{{.}}"{{if eq . $.Selected}} checked{{end}}> {{.}}</label>
{{end}}<label>New user: <input type="text" name="new_user" id="new_user" placeholder="user id" pattern="[A-Za-z0-9._-]{1,64}"></label></div>
<div class="box"><p>Allow {{.ClientID}} to:</p>
{{range .Scopes}}<label><input type="checkbox" name="scope" value="{{.}}" checked> {{.}}</label>
{{else}}<p><small>See your public profile (no extra permissions).</small></p>{{end}}</div>
<button id="agree" type="submit" name="action" value="agree">Agree</button>
<button id="cancel" type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</form>
</body></html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Error</title></head>
<body style="font-family:system-ui,sans-serif"><h1>Oops! Something went wrong</h1><p id="error">{{.}}</p></body></html>
`))
