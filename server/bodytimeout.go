package server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spotoken/spotoken"
)

// Defaults of Config.BodyTimeout and Config.MinBodyRate.
const (
	DefaultBodyTimeout = 10 * time.Second
	DefaultMinBodyRate = 1024 // bytes per second
)

// withBodyDeadline bounds how long a request's body may take to arrive: the
// connection's read deadline is BodyTimeout from the start of the request,
// pushed back by one second for every MinBodyRate bytes received. A client
// that trickles a body (one byte every few seconds) is cut off after about
// BodyTimeout, while a large upload at a modest rate (a 1 MiB image to the
// proxy at 64 KiB/s) keeps going. A body the handler does not read (an
// unauthenticated request) is discarded by net/http under the same
// deadline. Once the body has been read the deadline is lifted, so a slow
// answer from Spotify does not cut the connection. Deadlines are in real
// time, not Config.Now.
func (s *Server) withBodyDeadline(next http.Handler) http.Handler {
	if s.cfg.BodyTimeout < 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b := &deadlineBody{rc: http.NewResponseController(w), body: r.Body, start: time.Now(),
			base: s.cfg.BodyTimeout, rate: s.cfg.MinBodyRate}
		if b.extend() != nil { // the connection cannot take deadlines (a test recorder)
			next.ServeHTTP(w, r)
			return
		}
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

// deadlineBody is a request body read under a moving deadline.
type deadlineBody struct {
	rc    *http.ResponseController
	body  io.ReadCloser
	start time.Time
	base  time.Duration
	rate  int
	n     int64
	done  bool
}

// errBodyTimeout: the body did not arrive in time.
var errBodyTimeout = spotoken.Errorf(ETimeout, "the request body did not arrive in time")

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		if !b.done {
			b.done = true
			b.rc.SetReadDeadline(time.Time{})
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, errBodyTimeout
	case err == nil && n > 0:
		b.extend()
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.body.Close() }

func (b *deadlineBody) extend() error {
	allowance := b.base
	if b.rate > 0 {
		allowance += time.Duration(b.n) * time.Second / time.Duration(b.rate)
	}
	return b.rc.SetReadDeadline(b.start.Add(allowance))
}

// bodyReadError is the client's answer when reading its body failed.
func bodyReadError(w http.ResponseWriter, err error) error {
	if errors.Is(err, errBodyTimeout) {
		w.Header().Set("Connection", "close")
		return errBodyTimeout
	}
	return spotoken.Errorf(spotoken.EInvalid, "reading the body failed")
}
