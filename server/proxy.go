package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/webapi"
	"github.com/spotoken/spotoken/refresh"
)

// The Web API proxy: ANY /v1/proxy/{id}/{path...} calls Spotify's Web API
// at /{path} as the connection's user.
//
// The upstream is always Config.APIURL: the request's path is checked to be
// a plain Web API path under /v1/ (no empty, . or .. segments, nothing
// percent-encoded that decodes to a separator or a dot segment), and no
// header of the request (Host, X-Forwarded-*, ...) takes part in choosing
// where it goes. Only the headers in forwardedHeaders are passed on; the
// caller's Authorization (its API key) never is. Spotify's answer is
// streamed back as it is, without Set-Cookie.

const (
	// maxProxyBody bounds a proxied request's body, which is held in memory
	// so that the request can be sent again after a token refresh.
	maxProxyBody = 1 << 20
	// proxyMinTTL is the least lifetime a token must have left to be used,
	// so that it does not expire while the request is in flight.
	proxyMinTTL = 30 * time.Second
	// maxProxyPath bounds the Web API path, escaped.
	maxProxyPath = 2048
	// proxyRetryAfter is the Retry-After of a 503 when Spotify could not
	// be reached or did not answer in time.
	proxyRetryAfter = 5 * time.Second
)

// proxyBuffers lends the proxy its 32 KiB copy buffers, which it would
// otherwise allocate for every response.
var proxyBuffers httputil.BufferPool = &bufferPool{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return p.pool.Get().(*[32 << 10]byte)[:] }
func (p *bufferPool) Put(b []byte) { p.pool.Put((*[32 << 10]byte)(b)) }

// proxyMethods are the methods the proxy forwards.
const proxyMethods = "GET, HEAD, POST, PUT, DELETE, PATCH"

// forwardedHeaders are the request headers passed on to Spotify; every
// other one stays here: Authorization (the API key), Cookie, Proxy-*,
// Forwarded, X-Forwarded-*, X-Request-Id, hop-by-hop headers. The body's
// length is sent from the buffered body, not from the caller's header.
var forwardedHeaders = []string{"Accept", "Accept-Language", "Content-Type", "If-None-Match", "If-Modified-Since"}

func (s *Server) handleProxy(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	ck, err := connectionKey(r, key)
	if err != nil {
		s.countProxy(new(string), &err)
		return err
	}
	return s.proxyConnection(w, r, ck, proxyRest(r.URL.EscapedPath()), proxyOptions{links: true})
}

// proxyOptions are what the API's proxy and a browser app's differ in.
type proxyOptions struct {
	// links: a needs_reauth or insufficient_scope answer carries a connect
	// link for the user (an app's service hands it on; a browser app signs
	// in again instead, and must not see one).
	links bool
	// fail answers an error met after the request went to Spotify (a
	// failed refresh, a refusal for what the connection lacks); nil for
	// writeError.
	fail func(w http.ResponseWriter, r *http.Request, err error)
}

// write returns what answers an error met after the request went to
// Spotify.
func (o proxyOptions) write(s *Server) func(w http.ResponseWriter, r *http.Request, err error) {
	if o.fail != nil {
		return o.fail
	}
	return s.writeError
}

// proxyConnection calls the Web API at rest (escaped, without its leading
// slash) as connection ck's user; it returns the errors met before calling
// Spotify.
func (s *Server) proxyConnection(w http.ResponseWriter, r *http.Request, ck spotoken.ConnectionKey, rest string, opts proxyOptions) (err error) {
	outcome := ""
	defer func() { noteUpstream(r, outcome) }() // after countProxy, which sets outcome
	defer s.countProxy(&outcome, &err)
	target, endpoint, body, err := s.proxyRequest(w, r, rest)
	if err != nil {
		return err
	}
	at, err := s.cfg.Tokens.Token(r.Context(), ck, proxyMinTTL)
	if err != nil {
		return s.tokenError(r, ck, err, opts.links)
	}
	e := endpointFor(r.Method, endpoint)
	if e != nil {
		if missing := unmet(at.Scopes, e.need); len(missing) > 0 {
			return s.insufficientScope(w, r, ck, e, at.Scopes, missing, opts.links)
		}
	}
	outcome = s.forward(w, r, connectionSubject{s, ck, opts.links}, at.Token, target, body, opts.write(s), func(err error) error {
		switch {
		case errors.Is(err, errPermissionsMissing):
			return s.permissionsMissing(r, ck, e, endpoint, at.Scopes, opts.links)
		case errors.Is(err, errNotAllowlisted):
			return notAllowlisted(ck)
		}
		return nil
	})
	return nil
}

// countProxy counts a proxied request in spotoken_proxy_requests_total by
// its outcome: Spotify's status, or the code of spotoken's own answer err.
func (s *Server) countProxy(outcome *string, err *error) {
	if *err != nil {
		*outcome = spotoken.ErrorCode(*err)
	}
	if *outcome != "" {
		s.metrics.proxy(*outcome)
	}
}

// proxySubject is whose token a proxied request carries: a connection's
// (connectionSubject) or the app's own (appSubject).
type proxySubject interface {
	// invalidate tells the token's source that Spotify refused token, and
	// returns the token to use now.
	invalidate(ctx context.Context, token spotoken.Secret) (refresh.AccessToken, error)
	// answer turns a failure to get a token into the API's answer.
	answer(r *http.Request, err error) error
	// String names the subject in logs.
	String() string
}

// connectionSubject is a connection, as the proxy's subject; links as in
// proxyOptions.
type connectionSubject struct {
	s     *Server
	ck    spotoken.ConnectionKey
	links bool
}

func (c connectionSubject) invalidate(ctx context.Context, token spotoken.Secret) (refresh.AccessToken, error) {
	return c.s.cfg.Tokens.Invalidate(ctx, c.ck, token)
}
func (c connectionSubject) answer(r *http.Request, err error) error {
	return c.s.tokenError(r, c.ck, err, c.links)
}
func (c connectionSubject) String() string { return c.ck.String() }

// proxyRequest checks a proxied request's method and its Web API path rest
// (escaped, without its leading slash) and reads its body: it returns the
// upstream URL, the decoded Web API path (/v1/...) and the body.
func (s *Server) proxyRequest(w http.ResponseWriter, r *http.Request, rest string) (target *url.URL, endpoint string, body []byte, err error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
	default:
		w.Header().Set("Allow", proxyMethods)
		return nil, "", nil, spotoken.Errorf(EMethodNotAllowed, "the proxy does not forward %s; allowed: %s", truncate(r.Method, 16), proxyMethods)
	}
	if target, endpoint, err = proxyTarget(s.api, rest); err != nil {
		return nil, "", nil, err
	}
	if body, err = readProxyBody(w, r); err != nil {
		return nil, "", nil, err
	}
	return target, endpoint, body, nil
}

// proxyRest returns the escaped path after /v1/proxy/{id}/ (or
// /v1/proxy/-/); the route guarantees that it has that shape.
func proxyRest(escapedPath string) string {
	rest := strings.TrimPrefix(escapedPath, "/v1/proxy/")
	_, rest, _ = strings.Cut(rest, "/")
	return rest
}

var errProxyPath = spotoken.Errorf(spotoken.EInvalid,
	"the path after /v1/proxy/{id}/ must be a Web API path such as v1/me/player: it starts with v1/ and has no empty, . or .. segments, "+
		"no encoded slashes or backslashes, and only letters, digits and - . _ ~ : , = + ! $ & ' ( ) * (percent-encoded or not)")

// proxyTarget returns the upstream URL for rest, the escaped Web API path
// of a proxy request without its leading slash, and the decoded path
// (/v1/...) for the scope table. It accepts only paths whose every segment
// is non-empty, not made of dots alone, and of safe characters once
// decoded, so the URL stays on api's host under api's path + /v1/, and an
// upstream that decodes, normalizes or treats ; or \ specially cannot be
// walked out of /v1/.
func proxyTarget(api *url.URL, rest string) (*url.URL, string, error) {
	if len(rest) > maxProxyPath {
		return nil, "", spotoken.Errorf(spotoken.EInvalid, "the Web API path is longer than %d bytes", maxProxyPath)
	}
	if !strings.HasPrefix(rest, "v1/") {
		return nil, "", errProxyPath
	}
	segs := strings.Split(rest, "/")
	for i, seg := range segs {
		d, err := url.PathUnescape(seg)
		if err != nil || !validPathSegment(d) {
			return nil, "", errProxyPath
		}
		segs[i] = d
	}
	endpoint := "/" + strings.Join(segs, "/")
	return &url.URL{
		Scheme:  api.Scheme,
		Host:    api.Host,
		Path:    api.Path + endpoint,
		RawPath: api.EscapedPath() + "/" + rest, // the caller's encoding, checked above
	}, endpoint, nil
}

// validPathSegment reports whether a decoded path segment is safe to pass
// on: RFC 3986 unreserved characters and some sub-delimiters, which is all
// that Web API paths (ids, user names, keywords) use; not ";" (path
// parameters: "..;" is ".." to some servers), "@", "%" (double encoding),
// "/", "\", controls, spaces or non-ASCII; and not only dots.
func validPathSegment(seg string) bool {
	if strings.Trim(seg, ".") == "" {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:,=+!$&'()*", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// readProxyBody reads the request's body, up to maxProxyBody.
func readProxyBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := spotoken.Errorf(ETooLarge, "the proxy forwards bodies of up to %d bytes", maxProxyBody)
	if r.ContentLength > maxProxyBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxProxyBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge
	}
	if err != nil {
		if errors.Is(err, errBodyTimeout) {
			return nil, bodyReadError(w, err)
		}
		return nil, spotoken.Errorf(spotoken.EInvalid, "reading the body: %v", err)
	}
	return body, nil
}

// insufficientScope answers 403 insufficient_scope (RFC 6750 §3.1) with a
// link that asks the user for the scopes the request lacks on top of those
// granted.
func (s *Server) insufficientScope(w http.ResponseWriter, r *http.Request, ck spotoken.ConnectionKey, e *endpointScopes, granted spotoken.Scopes, missing []anyOf, links bool) error {
	need := preferred(missing)
	if !links {
		return &apiError{err: spotoken.Errorf(EInsufficientScope, "%s %s needs scope %s, which this sign-in did not grant",
			r.Method, e.path, describe(missing)), body: ErrorResponse{RequiredScopes: need}}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="spotoken", error="insufficient_scope", scope="`+need.String()+`"`)
	cause := spotoken.Errorf(EInsufficientScope, "%s %s needs scope %s, which connection %s lacks; send the user to connect_url to grant it",
		r.Method, e.path, describe(missing), ck.ID)
	scopes := append(slices.Clone(granted), need...).Normalize()
	return s.reconsent(r.Context(), ck, cause, ErrorResponse{RequiredScopes: need}, scopes)
}

// permissionsMissing is the answer to Spotify's 401 "Permissions missing"
// (a player endpoint called without its scope): 403 insufficient_scope with
// a link that asks the user for the scopes the endpoint needs, as far as
// the scope table knows them, on top of those granted. Spotify had the last
// word although the recorded scopes seemed enough: another of the table's
// alternatives was granted, or the grant changed at Spotify.
func (s *Server) permissionsMissing(r *http.Request, ck spotoken.ConnectionKey, e *endpointScopes, endpoint string, granted spotoken.Scopes, links bool) error {
	var need spotoken.Scopes
	what := "a scope it needs"
	if e != nil && len(e.need) > 0 {
		need = preferred(e.need)
		what = "scope " + need.String()
	}
	if !links {
		return &apiError{err: spotoken.Errorf(EInsufficientScope, "Spotify answered %s %s with 401 Permissions missing: this sign-in lacks %s",
			r.Method, endpoint, what), body: ErrorResponse{RequiredScopes: need}}
	}
	cause := spotoken.Errorf(EInsufficientScope, "Spotify answered %s %s with 401 Permissions missing: the grant of connection %s lacks %s; send the user to connect_url to grant it",
		r.Method, endpoint, ck.ID, what)
	return s.reconsent(r.Context(), ck, cause, ErrorResponse{RequiredScopes: need}, append(slices.Clone(granted), need...).Normalize())
}

// notAllowlisted is the answer to Spotify's development-mode refusal of a
// user who is not on the app's allowlist.
func notAllowlisted(ck spotoken.ConnectionKey) error {
	return spotoken.Errorf(EUserNotAllowlisted,
		"Spotify refused the user of connection %s: the app is in development mode and this Spotify user is not on its allowlist; "+
			"the app's owner must add the user under User Management in Spotify's developer dashboard (development mode serves up to 5 users)", ck.ID)
}

// forward sends the request to target with token and streams Spotify's
// answer back, retrying once with a new token if Spotify refuses this one.
// An answer that refuses the request for what the connection lacks (a
// scope, a place on the allowlist) becomes the error answer(err) returns
// for it. It returns the request's outcome for the metrics.
//
// The ReverseProxy is built for each request: it is a handful of small
// allocations next to a call to Spotify, and lets its hooks close over the
// request's own state. The connection pool is the shared upstream
// transport's.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, subj proxySubject, token spotoken.Secret, target *url.URL, body []byte,
	write func(http.ResponseWriter, *http.Request, error), answer func(error) error) (outcome string) {
	ctx := r.Context()
	if d := s.cfg.HTTPClient.Timeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	upstream := s.cfg.HTTPClient.Transport
	if upstream == nil {
		upstream = http.DefaultTransport
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := *target
			u.RawQuery = pr.Out.URL.RawQuery
			pr.Out.URL = &u
			pr.Out.Host = "" // the Host header is target's
			h := make(http.Header, len(forwardedHeaders)+1)
			for _, k := range forwardedHeaders {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					h[k] = slices.Clone(v)
				}
			}
			h.Set("Authorization", "Bearer "+token.Reveal())
			pr.Out.Header = h
			pr.Out.Trailer = nil
			pr.Out.TransferEncoding = nil
			setBody(pr.Out, body)
		},
		Transport:  &retryTransport{s: s, subj: subj, token: token, next: s.metrics.InstrumentTransport("api", upstream)},
		BufferPool: proxyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			for k := range resp.Header {
				// Spotify's own CORS answer (Access-Control-Allow-Origin: *)
				// is not spotoken's: a browser app's is set by its handler.
				if k == "Set-Cookie" || k == "Set-Cookie2" || strings.HasPrefix(k, "Access-Control-") {
					delete(resp.Header, k)
				}
			}
			outcome = strconv.Itoa(resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if e := answer(err); e != nil {
				write(w, req, e)
				outcome = spotoken.ErrorCode(e)
				return
			}
			outcome = s.proxyError(w, req, r.Context(), subj, err, write)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
	return outcome
}

// setBody gives out the buffered body, replayable for a retry.
func setBody(out *http.Request, body []byte) {
	out.ContentLength = int64(len(body))
	if len(body) == 0 {
		out.Body, out.GetBody = nil, nil
		return
	}
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

// proxyError answers a request that got no response from Spotify and
// returns its outcome. inbound is the caller's own context.
func (s *Server) proxyError(w http.ResponseWriter, req *http.Request, inbound context.Context, subj proxySubject, err error,
	write func(http.ResponseWriter, *http.Request, error)) string {
	var tf *tokenFailure
	switch {
	case inbound.Err() != nil:
		// The caller went away; nobody reads this answer.
		s.log.Debug("proxy: the caller went away", "request_id", requestID(req), "connection", subj.String())
		writeJSON(w, http.StatusBadGateway, ErrorResponse{Error: spotoken.EUnavailable, Description: "The request was canceled."})
		return "canceled"
	case errors.As(err, &tf) && !errors.Is(tf.err, context.DeadlineExceeded):
		// Spotify refused the token and getting a new one failed:
		// needs_reauth (with a connect link), rate_limited, ...
		e := subj.answer(req, tf.err)
		write(w, req, e)
		return spotoken.ErrorCode(e)
	}
	s.log.Warn("proxy: calling Spotify failed", "request_id", requestID(req), "connection", subj.String(),
		"method", req.Method, "err", transportErrorText(err))
	msg := "Spotify could not be reached; try again later."
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "Spotify did not answer in time; try again later."
	}
	s.writeError(w, req, &spotoken.Error{Code: spotoken.EUnavailable, Message: msg, RetryAfter: proxyRetryAfter})
	return spotoken.EUnavailable
}

// transportErrorText describes an upstream error without the URL that a
// *url.Error carries (its query string may hold anything).
func transportErrorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// tokenFailure is a failure to get a new token after Spotify refused one.
type tokenFailure struct{ err error }

func (e *tokenFailure) Error() string { return "getting a new access token: " + e.err.Error() }
func (e *tokenFailure) Unwrap() error { return e.err }

// Refusals of the request for what the connection lacks, which the
// proxy answers itself instead of passing Spotify's answer on.
var (
	// errPermissionsMissing: Spotify answered 401 Permissions missing.
	errPermissionsMissing = errors.New("proxy: Spotify answered 401 Permissions missing")
	// errNotAllowlisted: Spotify refused the user of a development-mode app.
	errNotAllowlisted = errors.New("proxy: Spotify refused a user who is not on the app's allowlist")
)

// retryTransport sends a proxied request with token and, when Spotify
// answers 401 for any reason but a missing scope (webapi.Classify), tells
// the token source and sends the request once more with the new token.
// Spotify's 401 Permissions missing and its development-mode refusal of a
// user not on the allowlist become errPermissionsMissing and
// errNotAllowlisted, without a refresh.
type retryTransport struct {
	s     *Server
	subj  proxySubject
	token spotoken.Secret
	next  http.RoundTripper
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if webapi.Classify(resp) == webapi.RejectedToken {
		if resp, err = t.retry(req, resp); err != nil {
			return nil, err
		}
	}
	switch {
	case webapi.Classify(resp) == webapi.PermissionsMissing:
		discard(resp)
		return nil, errPermissionsMissing
	case resp.StatusCode == http.StatusForbidden && t.notAllowlisted(req, resp):
		discard(resp)
		return nil, errNotAllowlisted
	}
	return resp, nil
}

// retry gets a new token for the one Spotify refused with resp and sends
// req again with it; it returns resp when there is nothing new to try.
func (t *retryTransport) retry(req *http.Request, resp *http.Response) (*http.Response, error) {
	at, err := t.subj.invalidate(req.Context(), t.token)
	if err != nil {
		resp.Body.Close()
		return nil, &tokenFailure{err}
	}
	if at.Token == "" || at.Token == t.token {
		return resp, nil // nothing new to try: Spotify's 401 stands
	}
	retry := req.Clone(req.Context())
	retry.Header.Set("Authorization", "Bearer "+at.Token.Reveal())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	discard(resp)
	t.s.log.Debug("proxy: Spotify refused the access token; retrying once with a new one",
		"request_id", requestID(req), "connection", t.subj.String())
	return t.next.RoundTrip(retry)
}

// notAllowlisted reports whether Spotify's 403 resp to req refuses the
// connection's user because the app is in development mode and the user
// is not on its allowlist. Two signals decide, neither of them a wording:
// that 403 is plain text where every other 403 of the Web API is its JSON
// error object, and GET /v1/me, which needs no scope and exists in every
// mode, answers 403 only to such a user. So a 403 that is not the error
// object is confirmed with /v1/me (unless it was /v1/me's own answer); a
// 403 from something in front of Spotify is passed on as it is.
func (t *retryTransport) notAllowlisted(req *http.Request, resp *http.Response) bool {
	if _, isErrorObject := webapi.Message(webapi.Peek(resp, webapi.MaxRejectionBody)); isErrorObject {
		return false
	}
	if resp.Request != nil {
		req = resp.Request // the retry's, after a refresh
	}
	if req.Method == http.MethodGet && req.URL.Path == t.s.api.Path+"/v1/me" {
		return true
	}
	me := &url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host, Path: t.s.api.Path + "/v1/me"}
	probe, err := http.NewRequestWithContext(req.Context(), http.MethodGet, me.String(), nil)
	if err != nil {
		return false
	}
	probe.Header.Set("Authorization", req.Header.Get("Authorization"))
	pr, err := t.next.RoundTrip(probe)
	if err != nil {
		return false
	}
	discard(pr)
	return pr.StatusCode == http.StatusForbidden
}

// discard drains a little of resp's body, so the connection can be reused,
// and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, webapi.MaxRejectionBody))
	resp.Body.Close()
}
