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

func (s *Server) handleProxy(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) (err error) {
	// outcome labels the request in spotoken_proxy_requests_total: Spotify's
	// status, or the code of spotoken's own answer.
	outcome := ""
	defer func() {
		if err != nil {
			outcome = spotoken.ErrorCode(err)
		}
		if outcome != "" {
			s.metrics.proxy(outcome)
			noteUpstream(r, outcome)
		}
	}()
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
	default:
		w.Header().Set("Allow", proxyMethods)
		return spotoken.Errorf(EMethodNotAllowed, "the proxy does not forward %s; allowed: %s", truncate(r.Method, 16), proxyMethods)
	}
	ck, err := connectionKey(r, key)
	if err != nil {
		return err
	}
	target, endpoint, err := proxyTarget(s.api, proxyRest(r.URL.EscapedPath()))
	if err != nil {
		return err
	}
	body, err := readProxyBody(w, r)
	if err != nil {
		return err
	}
	at, err := s.cfg.Tokens.Token(r.Context(), ck, proxyMinTTL)
	if err != nil {
		return s.tokenError(r, ck, err)
	}
	if e := endpointFor(r.Method, endpoint); e != nil {
		if missing := unmet(at.Scopes, e.need); len(missing) > 0 {
			return s.insufficientScope(w, r, ck, e, at.Scopes, missing)
		}
	}
	outcome = s.forward(w, r, ck, at.Token, target, body)
	return nil
}

// proxyRest returns the escaped path after /v1/proxy/{id}/; the route
// guarantees that it has that shape.
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
		return nil, spotoken.Errorf(spotoken.EInvalid, "reading the body: %v", err)
	}
	return body, nil
}

// insufficientScope answers 403 insufficient_scope (RFC 6750 §3.1) with a
// link that asks the user for the scopes the request lacks on top of those
// granted.
func (s *Server) insufficientScope(w http.ResponseWriter, r *http.Request, ck spotoken.ConnectionKey, e *endpointScopes, granted spotoken.Scopes, missing []anyOf) error {
	need := preferred(missing)
	w.Header().Set("WWW-Authenticate", `Bearer realm="spotoken", error="insufficient_scope", scope="`+need.String()+`"`)
	cause := spotoken.Errorf(EInsufficientScope, "%s %s needs scope %s, which connection %s lacks; send the user to connect_url to grant it",
		r.Method, e.path, describe(missing), ck.ID)
	scopes := append(slices.Clone(granted), need...).Normalize()
	return s.reconsent(r.Context(), ck, cause, ErrorResponse{RequiredScopes: need}, scopes)
}

// forward sends the request to target with token and streams Spotify's
// answer back, retrying once with a new token if Spotify refuses this one.
// It returns the request's outcome for the metrics.
//
// The ReverseProxy is built for each request: it is a handful of small
// allocations next to a call to Spotify, and lets its hooks close over the
// request's own state. The connection pool is the shared upstream
// transport's.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, ck spotoken.ConnectionKey, token spotoken.Secret, target *url.URL, body []byte) (outcome string) {
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
		Transport:  &retryTransport{s: s, key: ck, token: token, next: s.metrics.InstrumentTransport("api", upstream)},
		BufferPool: proxyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Set-Cookie")
			resp.Header.Del("Set-Cookie2")
			outcome = strconv.Itoa(resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			outcome = s.proxyError(w, req, r.Context(), ck, err)
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
func (s *Server) proxyError(w http.ResponseWriter, req *http.Request, inbound context.Context, ck spotoken.ConnectionKey, err error) string {
	var tf *tokenFailure
	switch {
	case inbound.Err() != nil:
		// The caller went away; nobody reads this answer.
		s.log.Debug("proxy: the caller went away", "request_id", requestID(req), "connection", ck.String())
		writeJSON(w, http.StatusBadGateway, ErrorResponse{Error: spotoken.EUnavailable, Description: "The request was canceled."})
		return "canceled"
	case errors.As(err, &tf) && !errors.Is(tf.err, context.DeadlineExceeded):
		// Spotify refused the token and getting a new one failed:
		// needs_reauth (with a connect link), rate_limited, ...
		e := s.tokenError(req, ck, tf.err)
		s.writeError(w, req, e)
		return spotoken.ErrorCode(e)
	}
	s.log.Warn("proxy: calling Spotify failed", "request_id", requestID(req), "connection", ck.String(),
		"method", req.Method, "err", transportErrorText(err))
	msg := "Spotify could not be reached; try again later."
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "Spotify did not answer in time; try again later."
	}
	writeJSON(w, http.StatusBadGateway, ErrorResponse{Error: spotoken.EUnavailable, Description: msg})
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

// retryTransport sends a proxied request with token and, when Spotify
// answers 401 because the token expired or is invalid (and for no other
// 401, nor any other status), tells the token source and sends the request
// once more with the new token.
type retryTransport struct {
	s     *Server
	key   spotoken.ConnectionKey
	token spotoken.Secret
	next  http.RoundTripper
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !webapi.TokenRejected(resp) {
		return resp, err
	}
	at, err := t.s.cfg.Tokens.Invalidate(req.Context(), t.key, t.token)
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
	io.Copy(io.Discard, io.LimitReader(resp.Body, webapi.MaxRejectionBody))
	resp.Body.Close()
	t.s.log.Debug("proxy: Spotify refused the access token; retrying once with a new one",
		"request_id", requestID(req), "connection", t.key.String())
	return t.next.RoundTrip(retry)
}
