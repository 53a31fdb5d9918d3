package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Faults are injected failures. SetFaults merges the fields that are set into
// the active faults; ClearFaults removes them all.
type Faults struct {
	// TokenStatus makes /api/token answer this status (400–599). With 429 the
	// body is empty unless TokenError is set; 5xx answer server_error; 4xx
	// answer TokenError (default invalid_request).
	TokenStatus           int
	TokenError            string
	TokenErrorDescription string

	// APIStatus makes every Web API endpoint answer this status (400–599)
	// with Spotify's error object; APIMessage and APIReason override its
	// message (default: Spotify's message for the status) and reason (for
	// example QUOTA_EXCEEDED). EmptyBody sends no body, as some 429s do.
	APIStatus  int
	APIMessage string
	APIReason  string
	EmptyBody  bool

	// RetryAfter, when not nil, is sent as Retry-After (seconds) with the
	// status faults set in the same call.
	RetryAfter *int

	// Count limits the status faults set in the same call to the next Count
	// matching requests; zero means until cleared.
	Count int

	// Window turns the 429 status faults set in the same call into
	// Spotify's penalty window (SPOTIFY.md, "Rate limits"): the first
	// matching request opens a window of RetryAfter seconds on the virtual
	// clock (hours have been seen); every request until it closes answers
	// 429 with the seconds left as Retry-After, and lengthens the window by
	// WindowGrowth, as calling into it does at Spotify (spotipy#1158). Once
	// the window has passed the fault is gone. It needs a 429 and a
	// positive RetryAfter, and no Count.
	Window bool
	// WindowGrowth is how much each request during the window lengthens
	// it; zero means DefaultWindowGrowth, negative none.
	WindowGrowth time.Duration

	// Latency delays every accounts and Web API request.
	Latency time.Duration

	// Outage, when not nil, turns a full outage on or off: every accounts
	// and Web API request gets 503 before any counter sees it.
	Outage *bool
}

// DefaultWindowGrowth is how much a request during a penalty window
// (Faults.Window) lengthens it, unless Faults.WindowGrowth says otherwise.
const DefaultWindowGrowth = time.Minute

type statusFault struct {
	status            int
	code, description string // token: RFC 6749 error; API: message
	reason            string
	retryAfter        string
	emptyBody         bool
	remaining         int // < 0: until cleared

	window    time.Duration // > 0: a penalty window (Faults.Window) this long
	growth    time.Duration // added to the window by each request during it
	windowEnd time.Time     // zero until the first request opens the window
}

type faultState struct {
	token, api *statusFault
	latency    time.Duration
	outage     bool
}

// SetFaults merges f into the active faults.
func (e *Emulator) SetFaults(f Faults) error {
	for _, s := range []int{f.TokenStatus, f.APIStatus} {
		if s != 0 && (s < 400 || s > 599) {
			return fmt.Errorf("fault status %d: want 400 to 599", s)
		}
	}
	if f.Count < 0 || f.Latency < 0 || (f.RetryAfter != nil && *f.RetryAfter < 0) {
		return errors.New("fault: count, latency and retry_after must not be negative")
	}
	var window, growth time.Duration
	if f.Window {
		switch {
		case f.TokenStatus == 0 && f.APIStatus == 0,
			f.TokenStatus != 0 && f.TokenStatus != http.StatusTooManyRequests,
			f.APIStatus != 0 && f.APIStatus != http.StatusTooManyRequests:
			return errors.New("fault: a window is a 429: set token_status or api_status to 429")
		case f.RetryAfter == nil || *f.RetryAfter <= 0:
			return errors.New("fault: a window needs a positive retry_after, its length in seconds")
		case f.Count != 0:
			return errors.New("fault: a window lasts its retry_after and takes no count")
		}
		window, growth = time.Duration(*f.RetryAfter)*time.Second, f.WindowGrowth
		if growth == 0 {
			growth = DefaultWindowGrowth
		}
		growth = max(growth, 0)
	}
	remaining := f.Count
	if remaining == 0 {
		remaining = -1
	}
	retryAfter := ""
	if f.RetryAfter != nil {
		retryAfter = strconv.Itoa(*f.RetryAfter)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if f.TokenStatus != 0 {
		tf := &statusFault{status: f.TokenStatus, code: f.TokenError, description: f.TokenErrorDescription,
			retryAfter: retryAfter, remaining: remaining, window: window, growth: growth}
		switch {
		case tf.code != "":
		case tf.status >= 500:
			tf.code = "server_error"
		case tf.status != http.StatusTooManyRequests:
			tf.code = "invalid_request"
		}
		if tf.code != "" && tf.description == "" {
			tf.description = http.StatusText(tf.status)
		}
		e.faults.token = tf
	}
	if f.APIStatus != 0 {
		msg := f.APIMessage
		if msg == "" {
			msg = apiFaultMessage(f.APIStatus)
		}
		e.faults.api = &statusFault{status: f.APIStatus, description: msg, reason: f.APIReason,
			retryAfter: retryAfter, emptyBody: f.EmptyBody, remaining: remaining, window: window, growth: growth}
	}
	if f.Latency != 0 {
		e.faults.latency = f.Latency
	}
	if f.Outage != nil {
		e.faults.outage = *f.Outage
	}
	return nil
}

func apiFaultMessage(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "API rate limit exceeded"
	case http.StatusInternalServerError:
		return "Server error"
	case http.StatusBadGateway:
		return "Bad gateway"
	case http.StatusServiceUnavailable:
		return "Service unavailable"
	}
	return http.StatusText(status)
}

// ClearFaults removes every injected fault.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	e.faults = faultState{}
	e.mu.Unlock()
}

// take consumes one use of *f at now, clearing it when used up, and
// returns what to answer. A penalty window opens on its first use, grows on
// every later one, and is cleared once now has reached its end.
func take(f **statusFault, now time.Time) *statusFault {
	cur := *f
	if cur == nil {
		return nil
	}
	if cur.window > 0 {
		switch {
		case cur.windowEnd.IsZero():
			cur.windowEnd = now.Add(cur.window)
		case !now.Before(cur.windowEnd):
			*f = nil
			return nil
		default:
			cur.windowEnd = cur.windowEnd.Add(cur.growth)
		}
		answer := *cur
		answer.retryAfter = strconv.FormatInt(int64(math.Ceil(cur.windowEnd.Sub(now).Seconds())), 10)
		return &answer
	}
	if cur.remaining > 0 {
		cur.remaining--
		if cur.remaining == 0 {
			*f = nil
		}
	}
	return cur
}

func (e *Emulator) takeTokenFault() *tokenError {
	e.mu.Lock()
	f := take(&e.faults.token, e.nowLocked())
	e.mu.Unlock()
	if f == nil {
		return nil
	}
	return &tokenError{status: f.status, code: f.code, description: f.description, retryAfter: f.retryAfter}
}

// serveAPIFault answers an injected Web API fault, if one is active.
func (e *Emulator) serveAPIFault(w http.ResponseWriter) bool {
	e.mu.Lock()
	f := take(&e.faults.api, e.nowLocked())
	e.mu.Unlock()
	if f == nil {
		return false
	}
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	if f.emptyBody {
		w.WriteHeader(f.status)
		return true
	}
	writeAPIErrorReason(w, f.status, f.description, f.reason)
	return true
}

// serveFault applies latency and outage to an accounts or Web API request.
func (e *Emulator) serveFault(w http.ResponseWriter, r *http.Request) bool {
	e.mu.Lock()
	latency, outage := e.faults.latency, e.faults.outage
	e.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if !outage {
		return false
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		writeAPIError(w, http.StatusServiceUnavailable, "Service unavailable")
		return true
	}
	http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	return true
}

// faultsWire is the JSON form of Faults at /_emulator/faults.
type faultsWire struct {
	TokenStatus           int    `json:"token_status"`
	TokenError            string `json:"token_error"`
	TokenErrorDescription string `json:"token_error_description"`
	APIStatus             int    `json:"api_status"`
	APIMessage            string `json:"api_message"`
	APIReason             string `json:"api_reason"`
	EmptyBody             bool   `json:"empty_body"`
	RetryAfter            *int   `json:"retry_after"`
	Count                 int    `json:"count"`
	Window                bool   `json:"window"`
	WindowGrowth          string `json:"window_growth"`
	Latency               string `json:"latency"`
	Outage                *bool  `json:"outage"`
}

func (e *Emulator) controlRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /_emulator/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, e.Stats())
	})
	m.HandleFunc("DELETE /_emulator/stats", func(w http.ResponseWriter, r *http.Request) {
		e.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_emulator/clock", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"now": e.Now().UTC().Format(time.RFC3339Nano)})
	})
	m.HandleFunc("POST /_emulator/clock", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Advance string `json:"advance"`
		}
		if !decodeControl(w, r, &body) {
			return
		}
		d, err := time.ParseDuration(body.Advance)
		if err != nil || d < 0 {
			controlError(w, http.StatusBadRequest, `advance: want a non-negative Go duration such as "3600s" or "1h30m"`)
			return
		}
		e.Advance(d)
		writeJSON(w, http.StatusOK, map[string]string{"now": e.Now().UTC().Format(time.RFC3339Nano)})
	})
	m.HandleFunc("GET /_emulator/users", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"users": e.Users()})
	})
	m.HandleFunc("POST /_emulator/users", func(w http.ResponseWriter, r *http.Request) {
		var u User
		if !decodeControl(w, r, &u) {
			return
		}
		if err := e.AddUser(u); err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, ErrUserExists) {
				status = http.StatusConflict
			}
			controlError(w, status, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, withUserDefaults(u))
	})
	m.HandleFunc("POST /_emulator/users/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ClientID string `json:"client_id"`
		}
		if !decodeControl(w, r, &body) {
			return
		}
		if body.ClientID == "" {
			controlError(w, http.StatusBadRequest, "client_id must be supplied")
			return
		}
		userResult(w, e.RevokeGrant(r.PathValue("id"), body.ClientID))
	})
	m.HandleFunc("POST /_emulator/users/{id}/password-change", func(w http.ResponseWriter, r *http.Request) {
		userResult(w, e.ChangePassword(r.PathValue("id")))
	})
	m.HandleFunc("PUT /_emulator/clients/{id}/allowlist", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Users []string `json:"users"`
		}
		if !decodeControl(w, r, &body) {
			return
		}
		switch err := e.SetAllowlist(r.PathValue("id"), body.Users); {
		case errors.Is(err, ErrUnknownClient):
			controlError(w, http.StatusNotFound, "unknown client")
		case err != nil:
			controlError(w, http.StatusBadRequest, err.Error())
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	m.HandleFunc("POST /_emulator/auto-approve", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			User string `json:"user"`
		}
		if !decodeControl(w, r, &body) {
			return
		}
		if body.User != "" && !userIDPattern.MatchString(body.User) {
			controlError(w, http.StatusBadRequest, "user: want 1 to 64 of A-Z a-z 0-9 . _ -, or empty to show the consent page")
			return
		}
		e.SetAutoApprove(body.User)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_emulator/faults", func(w http.ResponseWriter, r *http.Request) {
		var fw faultsWire
		if !decodeControl(w, r, &fw) {
			return
		}
		f := Faults{TokenStatus: fw.TokenStatus, TokenError: fw.TokenError, TokenErrorDescription: fw.TokenErrorDescription,
			APIStatus: fw.APIStatus, APIMessage: fw.APIMessage, APIReason: fw.APIReason, EmptyBody: fw.EmptyBody,
			RetryAfter: fw.RetryAfter, Count: fw.Count, Outage: fw.Outage, Window: fw.Window}
		if fw.WindowGrowth != "" {
			d, err := time.ParseDuration(fw.WindowGrowth)
			if err != nil {
				controlError(w, http.StatusBadRequest, `window_growth: want a Go duration such as "60s" (negative: none)`)
				return
			}
			f.WindowGrowth = d
		}
		if fw.Latency != "" {
			d, err := time.ParseDuration(fw.Latency)
			if err != nil {
				controlError(w, http.StatusBadRequest, `latency: want a Go duration such as "200ms"`)
				return
			}
			f.Latency = d
		}
		if err := e.SetFaults(f); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("DELETE /_emulator/faults", func(w http.ResponseWriter, r *http.Request) {
		e.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("/_emulator/", func(w http.ResponseWriter, r *http.Request) {
		controlError(w, http.StatusNotFound, "no such control endpoint: see the emulator package documentation")
	})
}

func userResult(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknownUser):
		controlError(w, http.StatusNotFound, "unknown user")
	case err != nil:
		controlError(w, http.StatusBadRequest, err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// decodeControl reads a small JSON body strictly: unknown fields and trailing
// data are errors. An empty body decodes as {}.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		controlError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		controlError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		controlError(w, http.StatusBadRequest, "malformed JSON body: trailing data")
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, status int, desc string) {
	writeJSON(w, status, map[string]string{"error": "invalid_request", "error_description": desc})
}
