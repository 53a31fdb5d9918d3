package accounts

import (
	"context"
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// observation records what happened to one token request below x/oauth2:
// whether a response arrived, and the error that cut its body short.
// x/oauth2 formats body-read errors with %v; this keeps their type for
// IsTransient. A request runs on the caller's goroutine (http.Client.Do and
// x/oauth2's body read are synchronous), so no lock is needed.
type observation struct {
	status  int   // of the last response received; 0: none
	readErr error // first error reading its body, other than io.EOF
}

type observationKey struct{}

// track returns a context for one token request: it sends x/oauth2's
// request through c.hc, records it in a fresh observation, and ends after
// c.timeout. Call cancel once the response has been handled.
func (c *Client) track(ctx context.Context) (_ context.Context, _ *observation, cancel context.CancelFunc) {
	cancel = func() {}
	if c.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	obs := new(observation)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.hc)
	return context.WithValue(ctx, observationKey{}, obs), obs, cancel
}

// observer is the RoundTripper of Client.hc: base, plus the observation.
type observer struct {
	base http.RoundTripper // nil: http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	base := o.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	obs, ok := req.Context().Value(observationKey{}).(*observation)
	if err != nil || !ok {
		return resp, err
	}
	obs.status = resp.StatusCode
	resp.Body = &observedBody{ReadCloser: resp.Body, obs: obs}
	return resp, nil
}

type observedBody struct {
	io.ReadCloser
	obs *observation
}

func (b *observedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.obs.readErr == nil {
		b.obs.readErr = err
	}
	return n, err
}
