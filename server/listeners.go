package server

// The public and the admin side. The public side (Handler) is what apps'
// services and users' browsers reach: the API, connect and callback, health
// checks. The admin side (AdminHandler) is for operators: /metrics, the
// dashboard and, as they come, the console and the admin API. With
// Config.SeparateAdmin each side has its own mux, served on its own listener
// (spotoken serve --admin-addr), so nothing of the admin side can be reached
// through the public one; without it both register on one mux, as before.
//
// Admin routes are registered in operatorRoutes, or from outside the
// package with MountAdmin; never on the public mux directly.

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
)

// DefaultHSTSMaxAge is the default max-age of Strict-Transport-Security.
const DefaultHSTSMaxAge = 365 * 24 * time.Hour

// muxes are the muxes routes are registered on: admin is public itself
// unless the admin side is separate.
type muxes struct {
	public, admin *http.ServeMux
	adminHandler  http.Handler
}

// routes builds the muxes and the handlers that serve them.
func (s *Server) routes() {
	s.muxes.public = http.NewServeMux()
	s.muxes.admin = s.muxes.public
	if s.cfg.SeparateAdmin {
		s.muxes.admin = http.NewServeMux()
		s.healthRoutes(s.muxes.admin)
	}
	s.publicRoutes(s.muxes.public)
	s.operatorRoutes(s.muxes.admin)
	s.handler = s.wrap(s.muxes.public, s.public)
	s.muxes.adminHandler = s.handler
	if s.cfg.SeparateAdmin {
		s.muxes.adminHandler = s.wrap(s.muxes.admin, s.admin)
	}
}

// wrap adds what every response gets: the request log and id, a deadline
// on the request's body, JSON for unmatched routes, and HSTS when served
// over HTTPS (base is the URL the listener is reached at).
func (s *Server) wrap(m *http.ServeMux, base *url.URL) http.Handler {
	return s.logRequests(s.withBodyDeadline(s.hsts(base, withJSONFallback(m))))
}

// AdminHandler returns the handler of the admin routes (metrics, the
// dashboard, what MountAdmin added) and health checks, for a listener of
// their own. Without Config.SeparateAdmin it is Handler, which serves them.
func (s *Server) AdminHandler() http.Handler { return s.muxes.adminHandler }

// MountAdmin lets mount register routes on the admin side (the console, the
// admin API): on the admin listener's mux with Config.SeparateAdmin, else
// beside the API. Call it before serving. Routes must not clash with the
// server's own (a clash panics, as http.ServeMux does).
func (s *Server) MountAdmin(mount func(*http.ServeMux)) { mount(s.muxes.admin) }

// hsts sets Strict-Transport-Security (RFC 6797) on responses over HTTPS:
// a TLS connection, or a base URL that is https (TLS ended by a proxy in
// front, which passes the header on). Browsers ignore it over plain HTTP.
func (s *Server) hsts(base *url.URL, next http.Handler) http.Handler {
	if s.cfg.HSTSMaxAge < 0 {
		return next
	}
	value := "max-age=" + strconv.FormatInt(int64(s.cfg.HSTSMaxAge/time.Second), 10)
	always := base.Scheme == "https"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if always || r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", value)
		}
		next.ServeHTTP(w, r)
	})
}

// metricsHandler serves /metrics: behind Config.MetricsToken when set, not
// at all with Config.NoMetrics.
func (s *Server) metricsHandler() http.Handler {
	if s.cfg.NoMetrics {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: spotoken.ENotFound,
				Description: "Metrics are not served on this listener: serve them on the admin listener (--admin-addr) or behind a token (--metrics-token-file); see docs/server.md."})
		})
	}
	h := s.metrics.handler(s.log)
	if s.cfg.MetricsToken == "" {
		return h
	}
	want := []byte(s.cfg.MetricsToken.Reveal())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotoken metrics"`)
			writeJSON(w, http.StatusUnauthorized, ErrorResponse{Error: EInvalidToken,
				Description: "/metrics needs the metrics token: Authorization: Bearer <the content of --metrics-token-file>."})
			return
		}
		h.ServeHTTP(w, r)
	})
}
