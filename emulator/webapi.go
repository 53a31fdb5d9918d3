package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// User is an emulated Spotify account.
type User struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name,omitempty"` // default: the id
	Email       string `json:"email,omitempty"`        // default: ID@example.com
	Country     string `json:"country,omitempty"`      // default: SE
	Product     string `json:"product,omitempty"`      // "premium" (default) or "free"
	// NoDevice: the user has no active device, so player commands answer
	// 404 NO_ACTIVE_DEVICE.
	NoDevice bool `json:"no_device,omitempty"`
}

type user struct {
	User
	playing   *playback
	playlists []*playlist
}

type playback struct {
	track     int // index into catalogTracks
	startedAt time.Time
	isPlaying bool
	pausedAt  time.Time // when paused: progress stands still here
}

type playlist struct {
	id, name, description string
	public, collaborative bool
	ownerID               string
}

// ErrUserExists is returned by AddUser for an id already taken.
var ErrUserExists = errors.New("emulator: user exists")

// AddUser creates a user; zero fields get defaults. Users named at the consent
// page or by AutoApprove are created on first use without it.
func (e *Emulator) AddUser(u User) error {
	if !userIDPattern.MatchString(u.ID) {
		return fmt.Errorf("emulator: user id %q: want 1 to 64 of A-Z a-z 0-9 . _ -", u.ID)
	}
	switch u.Product {
	case "", "premium", "free":
	default:
		return fmt.Errorf("emulator: user %q: product %q: want premium or free", u.ID, u.Product)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.users[u.ID] != nil {
		return fmt.Errorf("%w: %q", ErrUserExists, u.ID)
	}
	e.users[u.ID] = &user{User: withUserDefaults(u)}
	return nil
}

// Users returns every user, in no particular order.
func (e *Emulator) Users() []User {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]User, 0, len(e.users))
	for _, u := range e.users {
		out = append(out, u.User)
	}
	return out
}

func withUserDefaults(u User) User {
	if u.DisplayName == "" {
		u.DisplayName = u.ID
	}
	if u.Email == "" {
		u.Email = u.ID + "@example.com"
	}
	if u.Country == "" {
		u.Country = "SE"
	}
	if u.Product == "" {
		u.Product = "premium"
	}
	return u
}

func (e *Emulator) ensureUserLocked(id string) *user {
	u := e.users[id]
	if u == nil {
		u = &user{User: withUserDefaults(User{ID: id})}
		e.users[id] = u
	}
	return u
}

// apiHandler serves an authenticated Web API request for tok's user.
type apiHandler func(w http.ResponseWriter, r *http.Request, tok *accessToken)

func scopes(s ...string) []string { return s }

// api wraps h with what every Web API endpoint does first: injected faults,
// bearer authentication, the development-mode allowlist, the per-client rate
// limit and the scope check. Player endpoints (/v1/me/player…) refuse a
// missing scope with 401 Permissions missing, every other endpoint with 403
// Insufficient client scope (SPOTIFY.md, "Web API errors").
func (e *Emulator) api(required []string, h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if e.serveAPIFault(w) {
			return
		}
		tok, ok := e.authenticateAPI(w, r)
		if !ok {
			return
		}
		if tok.userID == "" {
			// A client-credentials token has no user behind it.
			writeAPIError(w, http.StatusUnauthorized, "Unauthorized.")
			return
		}
		e.mu.Lock()
		allowlist := e.clients[tok.clientID].Allowlist
		e.mu.Unlock()
		if len(allowlist) > 0 && !slices.Contains(allowlist, tok.userID) {
			// Plain text, not the JSON error object (zmb3/spotify#232).
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, notAllowlistedMessage)
			return
		}
		if wait, limited := e.rateLimit(tok.clientID); limited {
			w.Header().Set("Retry-After", strconv.Itoa(wait))
			writeAPIError(w, http.StatusTooManyRequests, "API rate limit exceeded")
			return
		}
		for _, s := range required {
			if tok.scopes[s] {
				continue
			}
			if strings.HasPrefix(r.URL.Path, "/v1/me/player") {
				writeAPIError(w, http.StatusUnauthorized, "Permissions missing")
				return
			}
			writeAPIError(w, http.StatusForbidden, "Insufficient client scope")
			return
		}
		h(w, r, tok)
	}
}

// notAllowlistedMessage is Spotify's plain-text answer to a user who is not
// on a development-mode app's allowlist.
const notAllowlistedMessage = "User not registered in the Developer Dashboard"

// The 401 messages for a token Spotify does not accept (SPOTIFY.md, "Web
// API errors"): one since 2026-07, three before.
const (
	message401           = "Missing/invalid/expired access token"
	legacyNoToken        = "No token provided"
	legacyInvalidToken   = "Invalid access token"
	legacyExpiredToken   = "The access token expired"
	malformedBearerError = "Only valid bearer authentication supported"
)

// authenticateAPI checks the bearer token and answers Spotify's 400/401 when
// it is missing, malformed, unknown or expired: a 401 with today's message
// and no WWW-Authenticate (whether Spotify still sends one is not known),
// or with Config.Legacy401 the messages and RFC 6750 challenges of before
// 2026-07. A value that is not one well-formed bearer token (another scheme,
// spaces or quotes in it, as a stringified dict has) answers 400.
func (e *Emulator) authenticateAPI(w http.ResponseWriter, r *http.Request) (*accessToken, bool) {
	h, present := r.Header["Authorization"]
	raw := ""
	if present {
		scheme, value, _ := strings.Cut(strings.Join(h, ","), " ")
		if !strings.EqualFold(scheme, "Bearer") || len(h) > 1 || !token68(value) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotify", error="invalid_request", error_description="`+malformedBearerError+`"`)
			writeAPIError(w, http.StatusBadRequest, malformedBearerError)
			return nil, false
		}
		raw = value
	}
	e.mu.Lock()
	tok := e.access[raw]
	expired := tok != nil && !e.nowLocked().Before(tok.expiresAt)
	e.mu.Unlock()
	if tok != nil && !expired {
		return tok, true
	}
	if !e.cfg.Legacy401 {
		writeAPIError(w, http.StatusUnauthorized, message401)
		return nil, false
	}
	var msg string
	switch {
	case raw == "" && !present:
		w.Header().Set("WWW-Authenticate", `Bearer realm="spotify"`)
		writeAPIError(w, http.StatusUnauthorized, legacyNoToken)
		return nil, false
	case tok == nil:
		msg = legacyInvalidToken
	default:
		msg = legacyExpiredToken
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="spotify", error="invalid_token", error_description="`+msg+`"`)
	writeAPIError(w, http.StatusUnauthorized, msg)
	return nil, false
}

// token68 reports whether v is empty or an RFC 7235 token68, the shape of a
// bearer token (RFC 6750 §2.1): letters, digits, - . _ ~ + / and trailing =.
func token68(v string) bool {
	i := 0
	for ; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			break
		}
	}
	if i == 0 && len(v) > 0 {
		return false
	}
	return strings.Trim(v[i:], "=") == ""
}

// rateLimit counts a request against clientID's rolling window and reports
// how many seconds to wait when the limit is reached.
func (e *Emulator) rateLimit(clientID string) (retryAfter int, limited bool) {
	if e.cfg.RateLimit == 0 {
		return 0, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.nowLocked()
	hits := e.rate[clientID]
	cut := 0
	for cut < len(hits) && !hits[cut].After(now.Add(-RateWindow)) {
		cut++
	}
	hits = hits[cut:]
	if len(hits) >= e.cfg.RateLimit {
		e.rate[clientID] = hits
		wait := hits[0].Add(RateWindow).Sub(now)
		return int(math.Ceil(wait.Seconds())), true
	}
	e.rate[clientID] = append(hits, now)
	return 0, false
}

// apiError is Spotify's Web API error object.
type apiError struct {
	Error struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason,omitempty"`
	} `json:"error"`
}

func writeAPIError(w http.ResponseWriter, status int, message string) {
	writeAPIErrorReason(w, status, message, "")
}

func writeAPIErrorReason(w http.ResponseWriter, status int, message, reason string) {
	var body apiError
	body.Error.Status, body.Error.Message, body.Error.Reason = status, message, reason
	writeAPIJSON(w, status, body)
}

// writeAPIJSON writes v pretty-printed, as the Web API does.
func writeAPIJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func (e *Emulator) handleMe(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	e.mu.Lock()
	u := e.ensureUserLocked(tok.userID).User
	e.mu.Unlock()
	me := userObject(r, u)
	sum := sha256.Sum256([]byte("account:" + u.ID))
	me["account_id"] = hex.EncodeToString(sum[:16])
	if !e.cfg.DevelopmentMode {
		me["followers"] = map[string]any{"href": nil, "total": 0}
		if tok.scopes["user-read-private"] {
			me["country"] = u.Country
			me["product"] = u.Product
			me["explicit_content"] = map[string]bool{"filter_enabled": false, "filter_locked": false}
		}
		if tok.scopes["user-read-email"] {
			me["email"] = u.Email
		}
	}
	writeAPIJSON(w, http.StatusOK, me)
}

func userObject(r *http.Request, u User) map[string]any {
	var name any
	if u.DisplayName != "" {
		name = u.DisplayName
	}
	return map[string]any{
		"display_name":  name,
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/user/" + u.ID},
		"href":          baseURL(r) + "/v1/users/" + u.ID,
		"id":            u.ID,
		"images":        []any{},
		"type":          "user",
		"uri":           "spotify:user:" + u.ID,
	}
}

func (e *Emulator) handleCurrentlyPlaying(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	e.mu.Lock()
	now := e.nowLocked()
	p := e.ensureUserLocked(tok.userID).playing
	var pb playback
	if p != nil {
		pb = *p
	}
	e.mu.Unlock()
	if p == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// Paused playback is 200 with is_playing false (spotify/web-api#1373).
	t := catalogTracks[pb.track]
	at, disallow := now, "resuming"
	if !pb.isPlaying {
		at, disallow = pb.pausedAt, "pausing"
	}
	progress := at.Sub(pb.startedAt).Milliseconds() % int64(t.durationMS)
	writeAPIJSON(w, http.StatusOK, map[string]any{
		"timestamp":              now.UnixMilli(),
		"context":                nil,
		"progress_ms":            progress,
		"item":                   trackObject(r, t, e.cfg.DevelopmentMode),
		"currently_playing_type": "track",
		"actions":                map[string]any{"disallows": map[string]bool{disallow: true}},
		"is_playing":             pb.isPlaying,
	})
}

// playerCommandFailed answers a player command that u cannot run: 403
// without Premium, 404 NO_ACTIVE_DEVICE without an active device.
func playerCommandFailed(w http.ResponseWriter, u *user) bool {
	switch {
	case u.Product != "premium":
		writeAPIErrorReason(w, http.StatusForbidden, "Player command failed: Premium required", "PREMIUM_REQUIRED")
	case u.NoDevice:
		writeAPIErrorReason(w, http.StatusNotFound, "Player command failed: No active device found", "NO_ACTIVE_DEVICE")
	default:
		return false
	}
	return true
}

func (e *Emulator) handlePause(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.ensureUserLocked(tok.userID)
	if playerCommandFailed(w, u) {
		return
	}
	if u.playing != nil && u.playing.isPlaying {
		u.playing.isPlaying, u.playing.pausedAt = false, e.nowLocked()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) handlePlay(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	var body struct {
		URIs       []string `json:"uris"`
		PositionMS int64    `json:"position_ms"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "Request body too large")
		return
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			writeAPIError(w, http.StatusBadRequest, "Malformed json")
			return
		}
	}
	track := -1
	for _, uri := range body.URIs {
		i := slices.IndexFunc(catalogTracks, func(t catalogTrack) bool { return "spotify:track:"+t.id == uri })
		if i < 0 {
			writeAPIError(w, http.StatusBadRequest, "Invalid track uri: "+sanitizeName(uri))
			return
		}
		if track < 0 {
			track = i
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.ensureUserLocked(tok.userID)
	if playerCommandFailed(w, u) {
		return
	}
	now := e.nowLocked()
	switch {
	case track < 0 && u.playing != nil && !u.playing.isPlaying && len(raw) == 0:
		// Resume where it was paused.
		u.playing.startedAt = now.Add(-u.playing.pausedAt.Sub(u.playing.startedAt))
		u.playing.isPlaying = true
	default:
		if track < 0 {
			track = 0
			if u.playing != nil {
				track = u.playing.track
			}
		}
		u.playing = &playback{track: track, isPlaying: true, startedAt: now.Add(-time.Duration(body.PositionMS) * time.Millisecond)}
	}
	w.WriteHeader(http.StatusNoContent)
}

// paging reads Spotify's limit (1–50, default 20) and offset (0–100000) query
// parameters.
func paging(w http.ResponseWriter, r *http.Request) (limit, offset int, ok bool) {
	limit, offset = 20, 0
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 50 {
			writeAPIError(w, http.StatusBadRequest, "Invalid limit")
			return 0, 0, false
		}
		limit = n
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 100000 {
			writeAPIError(w, http.StatusBadRequest, "Invalid offset")
			return 0, 0, false
		}
		offset = n
	}
	return limit, offset, true
}

// page builds a Spotify paging object over all for the request's path.
func page[T any](r *http.Request, all []T, limit, offset int, item func(T) any) map[string]any {
	link := func(off int) string {
		q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(off)}}
		for k, v := range r.URL.Query() {
			if k != "limit" && k != "offset" {
				q[k] = v
			}
		}
		return baseURL(r) + r.URL.Path + "?" + q.Encode()
	}
	items := []any{}
	for i := offset; i < len(all) && i < offset+limit; i++ {
		items = append(items, item(all[i]))
	}
	var next, prev any
	if offset+limit < len(all) {
		next = link(offset + limit)
	}
	if offset > 0 {
		prev = link(max(0, offset-limit))
	}
	return map[string]any{"href": link(offset), "items": items, "limit": limit, "next": next,
		"offset": offset, "previous": prev, "total": len(all)}
}

func (e *Emulator) handleMyPlaylists(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	limit, offset, ok := paging(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	u := e.ensureUserLocked(tok.userID)
	lists := slices.Clone(u.playlists)
	owner := u.User
	e.mu.Unlock()
	writeAPIJSON(w, http.StatusOK, page(r, lists, limit, offset, func(p *playlist) any {
		o := playlistObject(r, p, owner)
		e.setPlaylistItems(o, map[string]any{"href": baseURL(r) + "/v1/playlists/" + p.id + "/" + e.itemsField(), "total": 0})
		return o
	}))
}

// itemsField is the name of a playlist's items: "tracks", or "items" in
// development mode since 2026-02/03.
func (e *Emulator) itemsField() string {
	if e.cfg.DevelopmentMode {
		return "items"
	}
	return "tracks"
}

func (e *Emulator) setPlaylistItems(o map[string]any, v any) { o[e.itemsField()] = v }

// handleCreateUserPlaylist serves POST /v1/users/{user_id}/playlists, one of
// the endpoints development-mode apps lost in 2026-02/03: they get 403
// Forbidden and must use POST /v1/me/playlists.
func (e *Emulator) handleCreateUserPlaylist(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	if e.cfg.DevelopmentMode {
		writeAPIError(w, http.StatusForbidden, "Forbidden")
		return
	}
	e.createPlaylist(w, r, tok, r.PathValue("user_id") != tok.userID)
}

// handleCreatePlaylist serves POST /v1/me/playlists.
func (e *Emulator) handleCreatePlaylist(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	e.createPlaylist(w, r, tok, false)
}

// createPlaylist creates a playlist for tok's user; otherUser refuses it
// (after the body and scope checks) as a playlist for another user.
func (e *Emulator) createPlaylist(w http.ResponseWriter, r *http.Request, tok *accessToken, otherUser bool) {
	var body struct {
		Name          *string `json:"name"`
		Public        *bool   `json:"public"`
		Collaborative bool    `json:"collaborative"`
		Description   string  `json:"description"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "Request body too large")
		return
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "Error parsing JSON.")
		return
	}
	public := body.Public == nil || *body.Public
	need := "playlist-modify-public"
	if !public {
		need = "playlist-modify-private"
	}
	if !tok.scopes[need] {
		writeAPIError(w, http.StatusForbidden, "Insufficient client scope")
		return
	}
	if otherUser {
		writeAPIError(w, http.StatusForbidden, "You cannot create a playlist for another user")
		return
	}
	if body.Name == nil || strings.TrimSpace(*body.Name) == "" {
		writeAPIError(w, http.StatusBadRequest, "Missing required field: name")
		return
	}
	if public && body.Collaborative {
		writeAPIError(w, http.StatusBadRequest, "Collaborative playlists can only be private")
		return
	}
	p := &playlist{id: randomToken("", 16)[:22], name: *body.Name, description: body.Description,
		public: public, collaborative: body.Collaborative, ownerID: tok.userID}
	e.mu.Lock()
	u := e.ensureUserLocked(tok.userID)
	u.playlists = append([]*playlist{p}, u.playlists...)
	owner := u.User
	e.mu.Unlock()
	o := playlistObject(r, p, owner)
	o["followers"] = map[string]any{"href": nil, "total": 0}
	e.setPlaylistItems(o, map[string]any{"href": baseURL(r) + "/v1/playlists/" + p.id + "/" + e.itemsField(), "items": []any{},
		"limit": 100, "next": nil, "offset": 0, "previous": nil, "total": 0})
	w.Header().Set("Location", baseURL(r)+"/v1/playlists/"+p.id)
	writeAPIJSON(w, http.StatusCreated, o)
}

func playlistObject(r *http.Request, p *playlist, owner User) map[string]any {
	owner.Email, owner.Country, owner.Product = "", "", ""
	sum := sha256.Sum256([]byte(p.id + p.name))
	return map[string]any{
		"collaborative": p.collaborative,
		"description":   p.description,
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/playlist/" + p.id},
		"href":          baseURL(r) + "/v1/playlists/" + p.id,
		"id":            p.id,
		"images":        []any{},
		"name":          p.name,
		"owner":         userObject(r, owner),
		"public":        p.public,
		"snapshot_id":   hex.EncodeToString(sum[:12]),
		"type":          "playlist",
		"uri":           "spotify:playlist:" + p.id,
	}
}

func (e *Emulator) handleTop(w http.ResponseWriter, r *http.Request, tok *accessToken) {
	kind := r.PathValue("type")
	if kind != "artists" && kind != "tracks" {
		writeAPIError(w, http.StatusNotFound, "Service not found")
		return
	}
	var shift int
	switch r.URL.Query().Get("time_range") {
	case "", "medium_term":
		shift = 1
	case "short_term":
		shift = 0
	case "long_term":
		shift = 2
	default:
		writeAPIError(w, http.StatusBadRequest, "Invalid time range")
		return
	}
	limit, offset, ok := paging(w, r)
	if !ok {
		return
	}
	if kind == "artists" {
		writeAPIJSON(w, http.StatusOK, page(r, rotate(catalogArtists, shift), limit, offset,
			func(a catalogArtist) any { return artistObject(r, a, true, e.cfg.DevelopmentMode) }))
		return
	}
	writeAPIJSON(w, http.StatusOK, page(r, rotate(catalogTracks, shift), limit, offset,
		func(t catalogTrack) any { return trackObject(r, t, e.cfg.DevelopmentMode) }))
}

// rotate gives each time range its own order of the same catalog.
func rotate[T any](s []T, n int) []T {
	n %= len(s)
	return append(slices.Clone(s[n:]), s[:n]...)
}
