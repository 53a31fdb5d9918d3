package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
)

// Error codes of the API beyond the root package's, from RFC 6750.
const (
	// EInvalidToken: the API key is missing, malformed, unknown or revoked.
	EInvalidToken = "invalid_token"
	// EInsufficientScope: the connection lacks a scope the request needs.
	EInsufficientScope = "insufficient_scope"
	// ETooLarge: the request body is over the limit.
	ETooLarge = "request_too_large"
	// EMethodNotAllowed: the path exists but not with this method.
	EMethodNotAllowed = "method_not_allowed"
	// ELimitExceeded: the app reached one of its per-app caps (pending
	// connect links); try again after Retry-After.
	ELimitExceeded = spotoken.ELimitExceeded
	// ETimeout: the request's body did not arrive in time.
	ETimeout = "request_timeout"
	// EUserNotAllowlisted: Spotify refused the connection's user because the
	// app is in development mode and the user is not on its allowlist.
	EUserNotAllowlisted = "user_not_allowlisted"
)

// statuses maps error codes to HTTP statuses: the one table.
var statuses = map[string]int{
	spotoken.EInvalid:            http.StatusBadRequest,
	spotoken.ENotFound:           http.StatusNotFound,
	spotoken.EConflict:           http.StatusConflict,
	spotoken.ENeedsReauth:        http.StatusConflict,
	spotoken.ERateLimited:        http.StatusTooManyRequests,
	spotoken.EUnavailable:        http.StatusServiceUnavailable,
	spotoken.EAppMisconfigured:   http.StatusBadGateway,
	spotoken.EUnauthorizedClient: http.StatusBadRequest,
	spotoken.EInternal:           http.StatusInternalServerError,
	spotoken.EStoreUnavailable:   http.StatusServiceUnavailable,
	spotoken.EQueryTimeout:       http.StatusServiceUnavailable,
	ELimitExceeded:               http.StatusTooManyRequests,
	ETimeout:                     http.StatusRequestTimeout,
	EInvalidToken:                http.StatusUnauthorized,
	EInsufficientScope:           http.StatusForbidden,
	ETooLarge:                    http.StatusRequestEntityTooLarge,
	EMethodNotAllowed:            http.StatusMethodNotAllowed,
	EUserNotAllowlisted:          http.StatusForbidden,
}

// apiError is an error answered with extra fields (a connect link, the
// missing scopes) beyond code and message.
type apiError struct {
	err  *spotoken.Error
	body ErrorResponse
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// writeError answers err as JSON: the client sees the code and the
// client-safe message; anything else is logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body := ErrorResponse{}
	var ae *apiError
	if errors.As(err, &ae) {
		body = ae.body
	}
	body.Error, body.Description = spotoken.ErrorCode(err), spotoken.ErrorMessage(err)
	if body.Error == spotoken.EInternal {
		s.log.Error("internal error", "request_id", requestID(r), "method", r.Method, "route", r.Pattern, "err", err)
		body.Description = "Internal error; the server log has the detail (request id " + requestID(r) + ")."
	}
	var se *spotoken.Error
	if errors.As(err, &se) && se.RetryAfter > 0 {
		secs := int(math.Ceil(se.RetryAfter.Seconds()))
		body.RetryAfter = secs
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	status, ok := statuses[body.Error]
	if !ok {
		status = http.StatusBadRequest
	}
	var st *StatusError
	if errors.As(err, &st) {
		status = st.Status
	} else if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		challenge := `Bearer realm="spotoken", error="invalid_token"`
		if se != nil && se == errNoKey {
			challenge = `Bearer realm="spotoken"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSON(w, status, body)
}

// writeJSON answers v as JSON with status; responses are never cached, as
// some carry tokens.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	var err error
	if t, ok := v.(TokenResponse); ok { // the hot path: no reflection, no re-scan
		b = t.appendJSON(make([]byte, 0, 160+len(t.AccessToken)+len(t.Scope)))
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","error_description":"Internal error."}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// maxBody bounds JSON request bodies.
const maxBody = 64 << 10

// decodeJSON reads r's JSON body into v, a pointer to a struct. The body
// must be one JSON object whose keys are v's JSON field names exactly
// (encoding/json alone would take "MIN_TTL" for "min_ttl" and the last of
// repeated keys, so a proxy in front could read another request than this
// server does), with nothing after it, within maxBody. An empty body leaves
// v as it is when emptyOK. Errors are client-safe and never echo the body.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := strings.Cut(ct, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			return spotoken.Errorf(spotoken.EInvalid, "the body must be JSON (Content-Type: application/json), got %q", truncate(ct, 64))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return spotoken.Errorf(ETooLarge, "the body is over %d bytes", maxBody)
	}
	if err != nil {
		return bodyReadError(w, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return errNotObject
	}
	fields := jsonFields(reflect.TypeOf(v).Elem())
	if err := checkObject(body, fields); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *spotoken.Error // from a field's UnmarshalJSON
		if errors.As(err, &se) {
			return se
		}
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			if t, ok := fields[typ.Field]; ok {
				return spotoken.Errorf(spotoken.EInvalid, "%s must be %s", typ.Field, jsonKind(t))
			}
		}
		return spotoken.Errorf(spotoken.EInvalid, "the body is not valid: %s", jsonErrorText(err))
	}
	return nil
}

var errNotObject = spotoken.Errorf(spotoken.EInvalid, "the body must be a JSON object")

// checkObject checks that body is one JSON object, with keys among fields,
// none repeated, and nothing after it.
func checkObject(body []byte, fields map[string]reflect.Type) error {
	invalid := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return spotoken.Errorf(spotoken.EInvalid, "the body is not valid: %s", jsonErrorText(err))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return invalid(err)
	}
	if tok != json.Delim('{') {
		return errNotObject
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid(err)
		}
		key, _ := tok.(string)
		if _, ok := fields[key]; !ok {
			return spotoken.Errorf(spotoken.EInvalid, "the body is not valid: unknown field %q", truncate(key, 64))
		}
		if seen[key] {
			return spotoken.Errorf(spotoken.EInvalid, "the body is not valid: field %q is repeated", key)
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return invalid(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return invalid(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return spotoken.Errorf(spotoken.EInvalid, "the body has data after its JSON object")
	}
	return nil
}

// jsonFields maps the JSON names of struct type t's fields to their types,
// with the fields of untagged embedded structs, as encoding/json sees them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			for n, typ := range jsonFields(ft) {
				if _, ok := out[n]; !ok {
					out[n] = typ
				}
			}
			continue
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// jsonKind names what a JSON value for a field of type t must be.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	}
	return "an object"
}

// jsonErrorText describes a JSON decoding error without echoing the input.
func jsonErrorText(err error) string {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return "malformed JSON"
}

// withJSONFallback answers requests no route matches (404, or 405 with
// Allow) with a JSON error instead of the mux's plain text.
func withJSONFallback(m *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := m.Handler(r); pattern != "" {
			m.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, r)
		if allow := rec.Header().Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch rec.Code {
		case http.StatusMethodNotAllowed:
			writeJSON(w, rec.Code, ErrorResponse{Error: EMethodNotAllowed, Description: fmt.Sprintf("%s is not allowed here; allowed: %s", r.Method, rec.Header().Get("Allow"))})
		case http.StatusNotFound:
			writeJSON(w, rec.Code, ErrorResponse{Error: spotoken.ENotFound, Description: "No such endpoint; see /openapi.json."})
		default: // a redirect the mux made to clean a path
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		}
	})
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type requestIDKey struct{}

// requestInfo is what logRequests keeps of a request in its context: its
// id, and the audit note the API's wrapper gives it (withNote).
type requestInfo struct {
	id   string
	note *auditNote
}

// requestID returns the request's id, set by logRequests.
func requestID(r *http.Request) string {
	if ri, _ := r.Context().Value(requestIDKey{}).(*requestInfo); ri != nil {
		return ri.id
	}
	return ""
}

// validRequestID accepts a caller's X-Request-Id only when it is short and
// plain, so it is safe to log and echo.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// logRequests gives each request an id (the caller's X-Request-Id if it is
// plain, else a new one), echoes it, and logs one line per request: method,
// route, path with the connect session redacted, status, duration. Never
// the query (it carries OAuth codes) or a header.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = randomToken("")[:16]
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, &requestInfo{id: id}))
		sw := &statusWriter{ResponseWriter: w}
		aborted := false
		defer func() {
			// A handler that panics still gets its log line. The proxy
			// aborts a response it cannot finish with http.ErrAbortHandler,
			// which goes on up so net/http cuts the connection; any other
			// panic is answered 500 here, its value never logged (it
			// might hold a secret).
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					aborted = true
					defer panic(v)
				} else {
					s.log.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
						slog.String("request_id", id), slog.String("route", r.Pattern), slog.String("panic_type", fmt.Sprintf("%T", v)))
					if sw.status == 0 {
						s.writeError(sw, r, errors.New("internal error"))
					}
					sw.status = http.StatusInternalServerError
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			s.metrics.observeRequest(route, sw.status, elapsed)
			attrs := []slog.Attr{slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", route),
				slog.String("path", logPath(r.URL.Path)), slog.Int("status", sw.status),
				slog.Int64("bytes", sw.bytes), slog.Duration("duration", elapsed)}
			if aborted {
				attrs = append(attrs, slog.Bool("aborted", true))
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(sw, r)
	})
}

// logPath is a request path safe to log: a connect link's session is a
// bearer credential until used. Whatever the route, and in any case, a
// path under /connect/ is logged without its rest, and anything shaped like
// a session token (cs_…) is redacted.
func logPath(p string) string {
	// Any spelling the router would clean to /connect/… ("//connect/x",
	// "/./connect/x", "/Connect/x") and any path with the token in a
	// segment cleaned away.
	lower := strings.ToLower(p)
	if strings.Contains(lower, "/connect/") || strings.HasPrefix(path.Clean("/"+lower), "/connect/") {
		return "/connect/[REDACTED]"
	}
	// The pattern cannot match a path without "cs_" in any case (or the
	// long s, which (?i) folds to s): most paths skip the regexp.
	if strings.Contains(lower, "cs_") || strings.ContainsRune(p, 'ſ') {
		p = sessionTokenPattern.ReplaceAllString(p, "cs_[REDACTED]")
	}
	if len(p) > 256 {
		p = p[:256] + "…"
	}
	return p
}

// sessionTokenPattern matches a connect session token in a path.
var sessionTokenPattern = regexp.MustCompile(`(?i)cs_[a-z0-9_-]+`)
