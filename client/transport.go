package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spotoken/spotoken/internal/webapi"
)

// Transport returns an http.RoundTripper that sends each request through
// base (http.DefaultTransport if nil) with "Authorization: Bearer" and
// connectionID's access token from the client's shared cache (see
// TokenSource), replacing any Authorization header the request had.
//
// When Spotify answers 401, for any reason but a missing scope (Spotify's
// "Permissions missing", which a new token does not cure and which is
// returned as it is), the transport asks for a new token with force_refresh
// and sends the request once more, once per rejected token; when it answers 429 with a Retry-After within the retry
// policy, it waits (until the request's context is done) and sends it
// again. It sends a request again only if its body can be replayed (no
// body, or GetBody set); otherwise Spotify's answer is returned as it is.
// Errors getting a token, the first or the new one after a 401, are
// returned as they are (*Error for the broker's answers, such as
// rate_limited when force_refresh was asked too often), so http.Client.Do
// returns them in a *url.Error.
//
// Give it only requests for Spotify's Web API: every request carries the
// user's access token.
func (c *Client) Transport(connectionID string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, s: c.source(connectionID), base: base}
}

// HTTPClient returns an *http.Client whose requests carry connectionID's
// access token, through Transport(connectionID, nil). Pass it to a Web API
// client library:
//
//	sp := spotify.New(c.HTTPClient("user-42"))
//
// It has no timeout of its own: bound requests with their context.
func (c *Client) HTTPClient(connectionID string) *http.Client {
	return &http.Client{Transport: c.Transport(connectionID, nil)}
}

type transport struct {
	c    *Client
	s    *source
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	tok, err := t.s.token(ctx, "")
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(req, tok.AccessToken, req.Body)
	refreshed, retries := false, 0
	for err == nil && replayable {
		switch {
		case !refreshed && webapi.Classify(resp) == webapi.RejectedToken:
			refreshed = true
			fresh, ferr := t.s.token(ctx, tok.AccessToken)
			if ferr != nil {
				discard(resp)
				return nil, ferr
			}
			if fresh.AccessToken == tok.AccessToken {
				return resp, nil // nothing new to try: Spotify's 401 stands
			}
			t.c.opts.log.DebugContext(ctx, "spotoken: Spotify refused the access token; retrying once with a new one",
				"connection", t.s.id)
			body, berr := replay(req)
			if berr != nil {
				return resp, nil
			}
			discard(resp)
			tok = fresh
			resp, err = t.send(req, tok.AccessToken, body)
		case resp.StatusCode == http.StatusTooManyRequests && retries < t.c.opts.retry.MaxRetries:
			wait, ok := retryAfter(resp, t.c.opts.now())
			if !ok || wait > t.c.opts.retry.MaxWait {
				return resp, nil
			}
			body, berr := replay(req)
			if berr != nil {
				return resp, nil
			}
			discard(resp)
			retries++
			t.c.opts.log.DebugContext(ctx, "spotoken: Spotify rate-limited the request; waiting Retry-After",
				"connection", t.s.id, "wait", wait, "retry", retries)
			if werr := sleep(ctx, wait); werr != nil {
				closeReader(body)
				return nil, werr
			}
			if tok, err = t.s.token(ctx, ""); err != nil {
				closeReader(body)
				return nil, err
			}
			resp, err = t.send(req, tok.AccessToken, body)
		default:
			return resp, nil
		}
	}
	return resp, err
}

// send sends a copy of req with the access token and body.
func (t *transport) send(req *http.Request, token string, body io.ReadCloser) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.Header.Set("Authorization", "Bearer "+token)
	out.Body = body
	return t.base.RoundTrip(out)
}

// replay returns a new copy of req's body.
func replay(req *http.Request) (io.ReadCloser, error) {
	if req.GetBody == nil {
		return req.Body, nil // nil or http.NoBody
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("client: replaying the request body: %w", err)
	}
	return body, nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("client: waiting out Retry-After: %w", err)
		}
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: waiting out Retry-After: %w", ctx.Err())
	}
}

// retryAfter reads a 429's Retry-After: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3).
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 || s > int64(24*time.Hour/time.Second) {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// discard drains a little of resp's body, so the connection can be reused,
// and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, webapi.MaxRejectionBody))
	resp.Body.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func closeReader(r io.ReadCloser) {
	if r != nil {
		r.Close()
	}
}
