package tlsreload_test

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotoken/spotoken/internal/tlsreload"
	"github.com/spotoken/spotoken/internal/tlsreload/tlstest"
)

// served connects to addr and returns the common name of the certificate
// the server presents.
func served(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// listen serves TLS handshakes with r's certificate and returns the address.
func listen(t *testing.T, r *tlsreload.Reloader) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				c.(*tls.Conn).Handshake()
				c.Close()
			}(c)
		}
	}()
	return ln.Addr().String()
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := tlstest.Write(t, certFile, keyFile, "first.example")
	var logs bytes.Buffer
	r, err := tlsreload.New(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := listen(t, r)
	if got := served(t, addr); got != "first.example" {
		t.Fatalf("served %q, want first.example", got)
	}

	// Unchanged files: nothing to do.
	if changed, err := r.ReloadIfChanged(); changed || err != nil {
		t.Errorf("ReloadIfChanged on unchanged files: %v, %v", changed, err)
	}

	// A renewal caught halfway: the new certificate with the old key. The
	// old certificate stays, the refusal is logged once, and tried again.
	second := tlstest.New(t, "second.example")
	os.WriteFile(certFile, second.CertPEM, 0o600)
	for range 3 {
		if changed, err := r.ReloadIfChanged(); changed || err == nil {
			t.Errorf("ReloadIfChanged with a mismatched key: %v, %v", changed, err)
		}
	}
	if got := served(t, addr); got != "first.example" {
		t.Errorf("after a half-written renewal, served %q, want first.example", got)
	}
	if n := strings.Count(logs.String(), "did not load"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, &logs)
	}

	// The key arrives: the next check serves the new certificate.
	os.WriteFile(keyFile, second.KeyPEM, 0o600)
	if changed, err := r.ReloadIfChanged(); !changed || err != nil {
		t.Fatalf("ReloadIfChanged after the renewal: %v, %v", changed, err)
	}
	if got := served(t, addr); got != "second.example" {
		t.Errorf("after the renewal, served %q, want second.example", got)
	}
	if r.Certificate().Subject.CommonName != "second.example" {
		t.Errorf("Certificate() = %s", r.Certificate().Subject)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") || strings.Contains(logs.String(), string(second.KeyPEM[40:80])) {
		t.Error("the log holds key material")
	}

	// Reload (SIGHUP) loads even unchanged files; broken files are refused.
	os.WriteFile(certFile, first.CertPEM, 0o600)
	os.WriteFile(keyFile, first.KeyPEM, 0o600)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr); got != "first.example" {
		t.Errorf("after Reload, served %q, want first.example", got)
	}
	os.Remove(keyFile)
	if err := r.Reload(); err == nil {
		t.Error("Reload with the key file gone: no error")
	}
	if got := served(t, addr); got != "first.example" {
		t.Errorf("after a failed Reload, served %q, want first.example", got)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := tlsreload.New(certFile, keyFile, nil); err == nil {
		t.Error("New with no files: no error")
	}
	tlstest.Write(t, certFile, keyFile, "a.example")
	other := tlstest.New(t, "b.example")
	os.WriteFile(keyFile, other.KeyPEM, 0o600)
	if _, err := tlsreload.New(certFile, keyFile, nil); err == nil {
		t.Error("New with a key that does not match: no error")
	}
}
