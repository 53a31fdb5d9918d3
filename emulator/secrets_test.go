package emulator_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestSetClientSecrets plays Spotify's side of a client-secret rotation: a
// new secret accepted beside the old, then the old revoked. A code is not
// consumed by a request whose client authentication fails, so a broker can
// present it again with its other secret.
func TestSetClientSecrets(t *testing.T) {
	e := newEnv(t, nil)
	cc := func(secret string) tokenResult {
		t.Helper()
		return e.postToken(url.Values{"grant_type": {"client_credentials"}}, confID, secret)
	}
	refresh := func(rt, secret string) tokenResult {
		t.Helper()
		return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, confID, secret)
	}
	rt := e.confGrant("user-read-email").str("refresh_token")
	const next = "next-secret-value"
	if r := cc(next); r.Status != http.StatusBadRequest || r.str("error") != "invalid_client" {
		t.Fatalf("a secret not issued yet: %d %s", r.Status, r.Raw)
	}
	if err := e.emu.SetClientSecrets(confID, confSecret, next); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{confSecret, next} {
		if r := cc(s); r.Status != http.StatusOK {
			t.Errorf("during the overlap, client credentials with %.4s…: %d %s", s, r.Status, r.Raw)
		}
		if r := refresh(rt, s); r.Status != http.StatusOK {
			t.Errorf("during the overlap, refresh with %.4s…: %d %s", s, r.Status, r.Raw)
		}
	}
	if err := e.emu.SetClientSecrets(confID, next); err != nil {
		t.Fatal(err)
	}
	if r := refresh(rt, confSecret); r.Status != http.StatusBadRequest || r.str("error") != "invalid_client" {
		t.Errorf("the revoked secret: %d %s", r.Status, r.Raw)
	}
	if r := refresh(rt, next); r.Status != http.StatusOK {
		t.Errorf("the new secret: %d %s", r.Status, r.Raw)
	}

	// invalid_client does not use up an authorization code.
	code := e.code(confQuery("user-read-email"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {confRedirect}}
	if r := e.postToken(form, confID, confSecret); r.str("error") != "invalid_client" {
		t.Fatalf("code with the revoked secret: %d %s", r.Status, r.Raw)
	}
	if r := e.postToken(form, confID, next); r.Status != http.StatusOK {
		t.Errorf("the same code with the new secret: %d %s", r.Status, r.Raw)
	}

	for _, tt := range []struct {
		name, id string
		secrets  []string
	}{
		{"unknown client", "nope", []string{"x"}},
		{"public client", pubID, []string{"x"}},
		{"no secret", confID, nil},
		{"empty secret", confID, []string{""}},
	} {
		if err := e.emu.SetClientSecrets(tt.id, tt.secrets...); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}
