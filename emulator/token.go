package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxTokenForm bounds a /api/token body; real requests are a few hundred bytes.
const maxTokenForm = 16 << 10

// family is one grant: the refresh tokens descending from one authorization
// code. Revoking it kills all of them.
type family struct {
	clientID, userID string
	scopes           []string
	scopeSet         map[string]bool // shared by every access token of the grant
	consentedAt      time.Time
	pkce             bool   // began with PKCE: may refresh with client_id alone
	current          string // the refresh token that is not rotated out
	revoked          bool
}

type refreshToken struct {
	fam       *family
	rotatedAt time.Time // zero while current
}

type accessToken struct {
	clientID  string
	userID    string // empty for client credentials
	scopes    map[string]bool
	expiresAt time.Time
}

type authCode struct {
	clientID, userID, redirectURI string
	scopes                        []string
	challenge                     string // S256 code_challenge; empty without PKCE
	consentedAt, expiresAt        time.Time
	used                          bool
	fam                           *family // the grant it produced, revoked if the code is replayed
}

// tokenError is an RFC 6749 §5.2 error answer.
type tokenError struct {
	status      int
	code        string
	description string
	retryAfter  string
}

func (t *tokenError) Error() string { return t.code + ": " + t.description }

func errInvalidRequest(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_request", description: desc}
}
func errInvalidGrant(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_grant", description: desc}
}
func errInvalidClient(desc string) *tokenError {
	// Spotify answers invalid_client with 400, not RFC 6749's 401.
	return &tokenError{status: http.StatusBadRequest, code: "invalid_client", description: desc}
}

var errNoGrantType = &tokenError{status: http.StatusBadRequest, code: "unsupported_grant_type", description: "grant_type parameter is missing"}

type tokenResponse struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	Scope        *string `json:"scope,omitempty"`
	ExpiresIn    int64   `json:"expires_in"`
	RefreshToken string  `json:"refresh_token,omitempty"`
}

func (e *Emulator) handleToken(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		h.Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "Method not allowed: use POST"})
		return
	}
	resp, terr := e.token(w, r)
	if terr != nil {
		key := terr.code
		if key == "" {
			key = "http_" + strconv.Itoa(terr.status)
		}
		e.countTokenError(key)
		if terr.retryAfter != "" {
			h.Set("Retry-After", terr.retryAfter)
		}
		if terr.code == "" { // an injected fault without a body, as some Spotify 429s
			w.WriteHeader(terr.status)
			return
		}
		writeJSON(w, terr.status, map[string]string{"error": terr.code, "error_description": terr.description})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (e *Emulator) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, *tokenError) {
	form, terr := parseTokenForm(w, r)
	grantType := form.Get("grant_type")
	e.countTokenRequest(grantType)
	if terr != nil {
		return nil, terr
	}
	if terr := e.takeTokenFault(); terr != nil {
		return nil, terr
	}
	switch grantType {
	case "":
		return nil, errNoGrantType
	case "authorization_code", "refresh_token", "client_credentials":
	default:
		return nil, &tokenError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			description: "grant_type must be client_credentials, authorization_code or refresh_token"}
	}
	client, secretGiven, terr := e.authenticateClient(r, form)
	if terr != nil {
		return nil, terr
	}
	switch grantType {
	case "authorization_code":
		return e.exchangeCode(form, client, secretGiven)
	case "refresh_token":
		return e.refreshGrant(form, client, secretGiven)
	default:
		return e.clientCredentials(client, secretGiven)
	}
}

// parseTokenForm reads the form body. Spotify reads parameters only from an
// application/x-www-form-urlencoded body; anything else looks to it like a
// request without grant_type.
func parseTokenForm(w http.ResponseWriter, r *http.Request) (url.Values, *tokenError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return url.Values{}, errNoGrantType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenForm))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return url.Values{}, errInvalidRequest("Request body too large")
		}
		return url.Values{}, errInvalidRequest("Could not read request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return url.Values{}, errInvalidRequest("Malformed application/x-www-form-urlencoded body")
	}
	for k, v := range form {
		if len(v) > 1 { // RFC 6749 §3.2: parameters must not be repeated
			return form, errInvalidRequest("Parameter " + sanitizeName(k) + " must not be repeated")
		}
	}
	return form, nil
}

// sanitizeName makes a caller-supplied parameter name safe to echo.
func sanitizeName(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

// authenticateClient identifies the client by HTTP Basic (RFC 6749 §2.3.1) or
// the client_id / client_secret form fields, and checks a secret if one was
// presented. secretGiven reports whether the client proved itself with a
// secret; without one only PKCE flows are allowed.
func (e *Emulator) authenticateClient(r *http.Request, form url.Values) (c *Client, secretGiven bool, terr *tokenError) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, secret = formUnescape(id), formUnescape(secret)
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, false, errInvalidClient("Invalid client")
		}
		if form.Has("client_secret") {
			return nil, false, errInvalidRequest("Only one client authentication method may be used")
		}
		secretGiven = secret != ""
	} else {
		if r.Header.Get("Authorization") != "" {
			return nil, false, errInvalidClient("Invalid client")
		}
		id, secret = form.Get("client_id"), form.Get("client_secret")
		secretGiven = form.Has("client_secret")
	}
	if id == "" {
		return nil, false, errInvalidClient("Invalid client")
	}
	c = e.clients[id]
	if c == nil {
		return nil, false, errInvalidClient("Invalid client")
	}
	if secretGiven && (c.Secret == "" || !e.secretValid(c, secret)) {
		return nil, false, errInvalidClient("Invalid client secret")
	}
	return c, secretGiven, nil
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func (e *Emulator) exchangeCode(form url.Values, c *Client, secretGiven bool) (*tokenResponse, *tokenError) {
	code, redirectURI, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	if code == "" {
		return nil, errInvalidRequest("code must be supplied")
	}
	if redirectURI == "" {
		return nil, errInvalidRequest("redirect_uri must be supplied")
	}
	access, refresh := randomToken("BQ", 96), randomToken("AQ", 96) // minted outside the lock
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.nowLocked()
	e.sweepLocked(now)
	ac := e.codes[code]
	if ac == nil || ac.clientID != c.ID {
		return nil, errInvalidGrant("Invalid authorization code")
	}
	if ac.challenge == "" && !secretGiven {
		return nil, errInvalidClient("Invalid client")
	}
	if ac.used {
		// RFC 6749 §4.1.2: a replayed code revokes what it produced.
		if ac.fam != nil {
			ac.fam.revoked = true
		}
		return nil, errInvalidGrant("Invalid authorization code")
	}
	ac.used = true // single use, whatever happens next
	if !now.Before(ac.expiresAt) {
		return nil, errInvalidGrant("Authorization code expired")
	}
	if redirectURI != ac.redirectURI {
		return nil, errInvalidGrant("Invalid redirect URI")
	}
	switch {
	case ac.challenge != "" && verifier == "":
		return nil, errInvalidRequest("code_verifier required")
	case ac.challenge != "" && !validVerifier(verifier):
		return nil, errInvalidGrant("code_verifier was incorrect")
	case ac.challenge != "" && subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(ac.challenge)) != 1:
		return nil, errInvalidGrant("code_verifier was incorrect")
	case ac.challenge == "" && verifier != "":
		// The client believes it used PKCE but /authorize had no challenge.
		return nil, errInvalidGrant("code_verifier was incorrect")
	}
	fam := &family{clientID: c.ID, userID: ac.userID, scopes: ac.scopes, scopeSet: scopeSet(ac.scopes),
		consentedAt: ac.consentedAt, pkce: ac.challenge != ""}
	ac.fam = fam
	e.families[ac.userID] = append(e.families[ac.userID], fam)
	fam.current = refresh
	e.refresh[fam.current] = &refreshToken{fam: fam}
	scope := strings.Join(fam.scopes, " ")
	return &tokenResponse{
		AccessToken:  e.issueAccessLocked(access, c.ID, ac.userID, fam.scopeSet, now),
		TokenType:    "Bearer",
		Scope:        &scope,
		ExpiresIn:    int64(e.cfg.TokenTTL / time.Second),
		RefreshToken: fam.current,
	}, nil
}

func (e *Emulator) refreshGrant(form url.Values, c *Client, secretGiven bool) (*tokenResponse, *tokenError) {
	presented := form.Get("refresh_token")
	if presented == "" {
		return nil, errInvalidRequest("refresh_token must be supplied")
	}
	access, rotated := randomToken("BQ", 96), randomToken("AQ", 96) // minted outside the lock
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.nowLocked()
	e.sweepLocked(now)
	rt := e.refresh[presented]
	if rt == nil || rt.fam.clientID != c.ID {
		return nil, errInvalidGrant("Invalid refresh token")
	}
	fam := rt.fam
	if !fam.pkce && !secretGiven {
		return nil, errInvalidClient("Invalid client")
	}
	if fam.revoked {
		return nil, errInvalidGrant("Refresh token revoked")
	}
	if e.cfg.RefreshLifetime > 0 && !now.Before(fam.consentedAt.Add(e.cfg.RefreshLifetime)) {
		return nil, errInvalidGrant(e.cfg.ExpiredGrantDescription)
	}
	if presented != fam.current {
		switch {
		case e.cfg.Rotation.Mode == RotateGrace && now.Sub(rt.rotatedAt) <= e.cfg.Rotation.Grace:
			// Still inside the grace period: accepted, and rotated again below.
		case e.cfg.Rotation.Mode == RotateReuseDetection:
			fam.revoked = true // RFC 9700: reuse of a rotated-out token revokes the grant
			return nil, errInvalidGrant("Refresh token revoked")
		default:
			return nil, errInvalidGrant("Refresh token revoked")
		}
	}
	scope := strings.Join(fam.scopes, " ")
	resp := &tokenResponse{
		AccessToken: e.issueAccessLocked(access, c.ID, fam.userID, fam.scopeSet, now),
		TokenType:   "Bearer",
		Scope:       &scope,
		ExpiresIn:   int64(e.cfg.TokenTTL / time.Second),
	}
	if e.cfg.Rotation.Mode != RotateNever {
		e.refresh[fam.current].rotatedAt = now
		fam.current = rotated
		e.refresh[fam.current] = &refreshToken{fam: fam}
		resp.RefreshToken = fam.current
	}
	return resp, nil
}

func (e *Emulator) clientCredentials(c *Client, secretGiven bool) (*tokenResponse, *tokenError) {
	if !secretGiven {
		return nil, errInvalidClient("Invalid client")
	}
	access := randomToken("BQ", 96)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.nowLocked()
	e.sweepLocked(now)
	return &tokenResponse{
		AccessToken: e.issueAccessLocked(access, c.ID, "", nil, now),
		TokenType:   "Bearer",
		ExpiresIn:   int64(e.cfg.TokenTTL / time.Second),
	}, nil
}

// issueAccessLocked records tok as an access token; scopes is shared and
// never modified.
func (e *Emulator) issueAccessLocked(tok, clientID, userID string, scopes map[string]bool, now time.Time) string {
	e.access[tok] = &accessToken{clientID: clientID, userID: userID, scopes: scopes, expiresAt: now.Add(e.cfg.TokenTTL)}
	return tok
}

func scopeSet(scopes []string) map[string]bool {
	set := make(map[string]bool, len(scopes))
	for _, s := range scopes {
		set[s] = true
	}
	return set
}

// Retention after which the sweep forgets what can no longer be used: an
// expired access token still answers "The access token expired" for
// expiredRetention, a rotated-out refresh token "Refresh token revoked"
// (and trips reuse detection) for rotatedRetention beyond any grace period.
const (
	sweepEvery       = time.Minute
	expiredRetention = time.Hour
	rotatedRetention = 24 * time.Hour
	codeRetention    = time.Hour
)

// sweepLocked forgets expired state once per sweepEvery of virtual time, so
// memory and per-request work stay bounded however long the emulator runs.
// Nothing still usable is forgotten.
func (e *Emulator) sweepLocked(now time.Time) {
	if now.Sub(e.lastSweep) < sweepEvery {
		return
	}
	e.lastSweep = now
	for k, t := range e.access {
		if now.Sub(t.expiresAt) > expiredRetention {
			delete(e.access, k)
		}
	}
	keepRotated := rotatedRetention + e.cfg.Rotation.Grace
	for k, t := range e.refresh {
		if !t.rotatedAt.IsZero() && now.Sub(t.rotatedAt) > keepRotated {
			delete(e.refresh, k)
		}
	}
	for k, ac := range e.codes {
		if now.Sub(ac.expiresAt) > codeRetention {
			delete(e.codes, k)
		}
	}
	for k, p := range e.pending {
		if now.After(p.expiresAt) {
			delete(e.pending, k)
		}
	}
}

// s256 is the RFC 7636 S256 transform.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// RevokeGrant revokes every grant userID gave clientID, as a user does on
// their Spotify account page: refresh answers invalid_grant from then on,
// while issued access tokens keep working until they expire.
func (e *Emulator) RevokeGrant(userID, clientID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.users[userID] == nil {
		return ErrUnknownUser
	}
	for _, f := range e.families[userID] {
		if f.clientID == clientID {
			f.revoked = true
		}
	}
	return nil
}

// ChangePassword simulates a password change: every refresh token of userID,
// for every client, dies.
func (e *Emulator) ChangePassword(userID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.users[userID] == nil {
		return ErrUnknownUser
	}
	for _, f := range e.families[userID] {
		f.revoked = true
	}
	return nil
}

// ErrUnknownUser is returned for a user id the emulator has not seen.
var ErrUnknownUser = errors.New("emulator: unknown user")
