// Package tlsreload serves a TLS certificate that can be replaced on disk
// while the server runs: a Reloader hands tls.Config the certificate it
// loaded last (GetCertificate), loads the files again on Reload (on
// SIGHUP, say) and, through Watch, whenever their content changes (a
// renewal by certbot or cert-manager). A certificate and key that do not
// load, or do not match (a renewal caught halfway), leave the one being
// served in place; the next change or Reload tries again.
package tlsreload

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader holds the certificate of a cert file and key file pair. It is
// safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu      sync.Mutex
	loaded  [32]byte // the hash of the files' content last loaded
	refused [32]byte // the hash of the content last refused, logged once
}

// New loads certFile and keyFile (PEM) and returns a Reloader serving
// them; an error if they do not load or do not match. log receives a line
// for every reload and every refused change; nil discards.
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	f, err := r.read()
	if err != nil {
		return nil, err
	}
	cert, err := f.parse()
	if err != nil {
		return nil, err
	}
	r.cert.Store(cert)
	r.loaded = f.sum
	return r, nil
}

// GetCertificate returns the certificate loaded last; use it as
// tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate returns the leaf certificate being served.
func (r *Reloader) Certificate() *x509.Certificate { return r.cert.Load().Leaf }

// Reload loads the files again and serves them from the next handshake on.
// On error the certificate being served stays.
func (r *Reloader) Reload() error {
	_, err := r.reload(true)
	return err
}

// ReloadIfChanged reloads when the files' content differs from what was
// loaded last, and reports whether it did. Content that failed to load is
// tried again at every call, and logged once.
func (r *Reloader) ReloadIfChanged() (bool, error) { return r.reload(false) }

func (r *Reloader) reload(force bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := r.read()
	if err != nil {
		return false, r.refuse(f.sum, err)
	}
	if !force && f.sum == r.loaded {
		return false, nil
	}
	cert, err := f.parse()
	if err != nil {
		return false, r.refuse(f.sum, err)
	}
	r.cert.Store(cert)
	r.loaded, r.refused = f.sum, [32]byte{}
	r.log.Info("tls: serving the certificate from "+r.certFile, "subject", cert.Leaf.Subject.String(),
		"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter.UTC())
	return true, nil
}

// refuse logs a failed reload once per content and returns its error.
func (r *Reloader) refuse(sum [32]byte, err error) error {
	if sum != r.refused || sum == ([32]byte{}) {
		r.refused = sum
		r.log.Warn("tls: the certificate files did not load; still serving the previous certificate", "err", err)
	}
	return err
}

// files is the content of the certificate and key files, and its hash.
type files struct {
	certFile, keyFile string
	certPEM, keyPEM   []byte
	sum               [32]byte
}

// read reads both files.
func (r *Reloader) read() (files, error) {
	f := files{certFile: r.certFile, keyFile: r.keyFile}
	var err1, err2 error
	f.certPEM, err1 = os.ReadFile(r.certFile)
	f.keyPEM, err2 = os.ReadFile(r.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return f, fmt.Errorf("tls: %w", err)
	}
	h := sha256.New()
	h.Write(f.certPEM)
	h.Write([]byte{0})
	h.Write(f.keyPEM)
	f.sum = [32]byte(h.Sum(nil))
	return f, nil
}

// parse makes the certificate of the files, its leaf parsed.
func (f files) parse() (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(f.certPEM, f.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: %s and %s: %w", f.certFile, f.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: %s: %w", f.certFile, err)
		}
	}
	return &cert, nil
}

// Watch calls ReloadIfChanged every interval until ctx is done.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.ReloadIfChanged()
		}
	}
}
