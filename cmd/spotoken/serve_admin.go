package main

// serve's admin listener (--admin-addr), /metrics access, HSTS and TLS
// certificate reloading.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/pflag"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/tlsreload"
)

// adminOptions are serve's flags for the admin side and HTTPS.
type adminOptions struct {
	Addr             string
	URL              string
	MetricsTokenFile string
	HSTSMaxAge       time.Duration
	TLSWatch         time.Duration
}

func (o *adminOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Addr, "admin-addr", "", "serve /metrics and the dashboard on this separate listen address only (e.g. 127.0.0.1:9090); the --addr listener then serves only the API, connect/callback and health")
	f.StringVar(&o.URL, "admin-url", "", "with --admin-addr: the base URL operators' browsers reach the admin listener at (default: http(s)://<admin-addr>)")
	f.StringVar(&o.MetricsTokenFile, "metrics-token-file", "", "require 'Authorization: Bearer <token>' for /metrics, the token read from this file (Prometheus: authorization.credentials_file)")
	f.DurationVar(&o.HSTSMaxAge, "hsts-max-age", 365*24*time.Hour, "Strict-Transport-Security max-age sent on HTTPS responses (TLS here, or an https --public-url); 0 sends none")
	f.DurationVar(&o.TLSWatch, "tls-watch-interval", time.Minute, "check --tls-cert and --tls-key this often and serve them when they change (0: only on SIGHUP)")
}

func (o *adminOptions) validate() error {
	if o.URL != "" && o.Addr == "" {
		return usageError{errors.New("--admin-url goes with --admin-addr")}
	}
	if o.URL != "" {
		if _, err := parseHTTPURL("--admin-url", o.URL); err != nil {
			return usageError{err}
		}
	}
	if o.HSTSMaxAge < 0 {
		return usageError{errors.New("--hsts-max-age must be 0 (none) or positive")}
	}
	if o.TLSWatch < 0 {
		return usageError{errors.New("--tls-watch-interval must be 0 (SIGHUP only) or positive")}
	}
	return nil
}

// adminSide is the admin listener and what /metrics needs, as serve runs them.
type adminSide struct {
	ln  net.Listener // nil without --admin-addr
	url string       // the admin routes' base URL (the public URL without --admin-addr)
	// metricsToken guards /metrics; noMetrics leaves it out of a public
	// listener that anyone may reach.
	metricsToken spotoken.Secret
	noMetrics    bool
	certs        *tlsreload.Reloader // with --tls-cert
	hs           *http.Server
	errc         chan error // the admin server's Serve error; nil without --admin-addr
}

// listen opens the admin listener, reads the metrics token and decides
// whether the public listener pub may serve /metrics: with --admin-addr it
// never does; else only behind a token, or on a loopback address.
func (o *adminOptions) listen(pub net.Listener, scheme, publicURL string) (*adminSide, error) {
	a := &adminSide{url: publicURL}
	if o.MetricsTokenFile != "" {
		token, err := readMetricsToken(o.MetricsTokenFile)
		if err != nil {
			return nil, err
		}
		a.metricsToken = token
	}
	if o.Addr == "" {
		a.noMetrics = a.metricsToken == "" && !loopback(pub.Addr())
		return a, nil
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --admin-addr %s: %w", o.Addr, err)
	}
	a.ln, a.errc = ln, make(chan error, 1)
	a.url = strings.TrimSuffix(o.URL, "/")
	if a.url == "" {
		a.url = scheme + "://" + displayAddr(ln.Addr())
	}
	return a, nil
}

// separate reports whether there is an admin listener of its own.
func (a *adminSide) separate() bool { return a.ln != nil }

// start serves h on the admin listener, with pub's timeouts and, under
// TLS, the same (reloaded) certificate.
func (a *adminSide) start(pub *http.Server, h http.Handler, log *slog.Logger) {
	if a.noMetrics {
		log.Warn("/metrics is not served: --addr is not a loopback address and there is neither --admin-addr nor --metrics-token-file; see docs/server.md")
	}
	if a.ln == nil {
		return
	}
	a.hs = &http.Server{Handler: h, ReadHeaderTimeout: pub.ReadHeaderTimeout, ReadTimeout: pub.ReadTimeout,
		WriteTimeout: pub.WriteTimeout, IdleTimeout: pub.IdleTimeout, MaxHeaderBytes: pub.MaxHeaderBytes, ErrorLog: pub.ErrorLog}
	ln := a.ln
	if a.certs != nil {
		a.hs.TLSConfig = &tls.Config{GetCertificate: a.certs.GetCertificate, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, a.hs.TLSConfig)
	}
	go func() { a.errc <- a.hs.Serve(ln) }()
}

// shutdown stops the admin server gracefully.
func (a *adminSide) shutdown(ctx context.Context, log *slog.Logger) {
	if a.hs == nil {
		return
	}
	if err := a.hs.Shutdown(ctx); err != nil {
		log.Warn("shutdown: admin requests still in flight", "err", err)
	}
}

// close closes a listener that was never served.
func (a *adminSide) close() {
	if a.ln != nil && a.hs == nil {
		a.ln.Close()
	}
}

// loopback reports whether addr is a loopback address, which only this
// machine can reach.
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// readMetricsToken reads the token of --metrics-token-file: one line (a
// trailing newline is dropped) of 16 to 4096 printable characters without
// spaces. The token never appears in an error.
func readMetricsToken(path string) (spotoken.Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usageError{fmt.Errorf("--metrics-token-file: %w", err)}
	}
	token := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if len(token) < 16 || len(token) > 4096 || strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "", usageError{fmt.Errorf("--metrics-token-file %s: the token must be one line of 16 to 4096 characters without spaces (e.g. from openssl rand -hex 32)", path)}
	}
	return spotoken.Secret(token), nil
}

// hstsMaxAge maps the flag's 0 (none) to the server's negative.
func hstsMaxAge(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// notifyHangUp starts catching SIGHUP, before serving begins, so that
// one sent from then on never ends the process (Go's default).
func notifyHangUp() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// reloadOnHangUp reloads the TLS certificate on every SIGHUP from hup until
// ctx is done (systemd's ExecReload sends one). Without TLS there is
// nothing to reload; SIGHUP is logged and ignored.
func reloadOnHangUp(ctx context.Context, log *slog.Logger, certs *tlsreload.Reloader, hup chan os.Signal) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if certs == nil {
			log.Info("SIGHUP: nothing to reload (no --tls-cert)")
			continue
		}
		if err := certs.Reload(); err != nil {
			log.Error("SIGHUP: the TLS certificate was not reloaded; still serving the previous one", "err", err)
		}
	}
}
