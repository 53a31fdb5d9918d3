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
)

// statuses maps error codes to HTTP statuses: the one table.
var statuses = map[string]int{
	spotoken.EInvalid:          http.StatusBadRequest,
	spotoken.ENotFound:         http.StatusNotFound,
	spotoken.EConflict:         http.StatusConflict,
	spotoken.ENeedsReauth:      http.StatusConflict,
	spotoken.ERateLimited:      http.StatusTooManyRequests,
	spotoken.EUnavailable:      http.StatusServiceUnavailable,
	spotoken.EAppMisconfigured: http.StatusBadGateway,
	spotoken.EInternal:         http.StatusInternalServerError,
	EInvalidToken:              http.StatusUnauthorized,
	EInsufficientScope:         http.StatusForbidden,
	ETooLarge:                  http.StatusRequestEntityTooLarge,
	EMethodNotAllowed:          http.StatusMethodNotAllowed,
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
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spotoken", error="invalid_token"`)
	}
	writeJSON(w, status, body)
}

// writeJSON answers v as JSON with status; responses are never cached, as
// some carry tokens.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
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

// decodeJSON reads r's JSON body into v, refusing unknown fields, trailing
// data and bodies over maxBody. An empty body leaves v as it is when
// emptyOK.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return spotoken.Errorf(spotoken.EInvalid, "the body must be JSON (Content-Type: application/json), got %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return spotoken.Errorf(ETooLarge, "the body is over %d bytes", maxBody)
	}
	if err != nil {
		return spotoken.Errorf(spotoken.EInvalid, "reading the body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return spotoken.Errorf(spotoken.EInvalid, "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return spotoken.Errorf(spotoken.EInvalid, "the body is not valid: %s", jsonErrorText(err))
	}
	if dec.More() {
		return spotoken.Errorf(spotoken.EInvalid, "the body has data after its JSON object")
	}
	return nil
}

// jsonErrorText describes a JSON decoding error without echoing the input.
func jsonErrorText(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
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

// requestID returns the request's id, set by logRequests.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
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
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		s.metrics.observeRequest(route, sw.status, elapsed)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", route),
			slog.String("path", logPath(r.URL.Path)), slog.Int("status", sw.status),
			slog.Int64("bytes", sw.bytes), slog.Duration("duration", elapsed))
	})
}

// logPath is a request path safe to log: a connect link's session is a
// bearer credential until used.
func logPath(p string) string {
	if strings.HasPrefix(p, "/connect/") {
		return "/connect/[REDACTED]"
	}
	if len(p) > 256 {
		p = p[:256] + "…"
	}
	return p
}
