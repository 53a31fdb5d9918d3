package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDemo runs `spotoken demo` in-process: it must exit 0 having checked
// every step, and its report must print no token or key.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"demo"}, strings.NewReader(""), &out, &errb); code != exitOK {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	for _, want := range []string{
		"1. Connect", "Vend", "Proxy", "Expire", "Rotation", "429", "Revoke", "Re-consent", "Six months on", "connection.expiring", "Delete", "Webhooks",
		"1 refresh at Spotify", "409 needs_reauth", "every signature verified", "every step behaved as described",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "✗") {
		t.Errorf("the report shows a failure:\n%s", report)
	}
	for _, secret := range []string{"sk_", "whsec_", "access_token", "refresh_token"} {
		if strings.Contains(report, secret) {
			t.Errorf("the report shows %q", secret)
		}
	}
}
