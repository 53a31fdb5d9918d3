package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAppsBFF: spotoken apps bff turns an app's BFF on with its origins,
// changes one setting keeping the others, shows them, and turns it off, on
// both stores; bad input is a usage error that changes nothing.
func TestAppsBFF(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newAdminEnv(t, backend)
			e.ok("", "apps", "create", "--name", "spa", "--client-id", "abc", "--redirect-uri", "https://tokens.example/callback",
				"--scopes", "user-read-private")
			view := func() bffView {
				t.Helper()
				out, _ := e.ok("", "apps", "bff", "spa", "--json")
				var v bffView
				if err := json.Unmarshal([]byte(out), &v); err != nil {
					t.Fatalf("apps bff --json: %v\n%s", err, out)
				}
				return v
			}
			if v := view(); v.Enabled || len(v.Origins) != 0 {
				t.Errorf("a new app's BFF: %+v, want off", v)
			}
			out, _ := e.ok("", "apps", "bff", "spa")
			if !strings.Contains(out, "is off") {
				t.Errorf("apps bff of an app with it off says:\n%s", out)
			}
			e.fails(exitUsage, "give the SPA's origins to turn it on", "", "apps", "bff", "spa", "--token-scopes", "streaming")

			e.ok("", "apps", "bff", "spa", "--origin", "HTTPS://App.Example:443/", "--origin", "http://127.0.0.1:5173", "--origin", "https://app.example")
			v := view()
			if !v.Enabled || strings.Join(v.Origins, " ") != "https://app.example http://127.0.0.1:5173" || v.TokenMediating {
				t.Errorf("after --origin: %+v", v)
			}
			e.ok("", "apps", "bff", "spa", "--token-scopes", "streaming,user-read-private", "--scopes", "streaming user-read-private")
			v = view()
			if len(v.Origins) != 2 || !v.TokenMediating || v.TokenScopes.String() != "streaming user-read-private" || v.Scopes.String() != "streaming user-read-private" {
				t.Errorf("after --token-scopes: %+v, want the origins kept", v)
			}
			out, _ = e.ok("", "apps", "bff", "spa")
			for _, want := range []string{"https://app.example", "token-mediating mode", "on, for grants within: streaming user-read-private"} {
				if !strings.Contains(out, want) {
					t.Errorf("apps bff shows no %q:\n%s", want, out)
				}
			}
			e.ok("", "apps", "bff", "spa", "--token-scopes", "")
			if v := view(); v.TokenMediating || len(v.Origins) != 2 {
				t.Errorf("after --token-scopes \"\": %+v", v)
			}

			for _, bad := range [][]string{
				{"--origin", "https://app.example/path"},
				{"--origin", "*"},
				{"--origin", ""},
				{"--scopes", "not-a-scope"},
				{"--off", "--origin", "https://app.example"},
			} {
				e.fails(exitUsage, "", "", append([]string{"apps", "bff", "spa"}, bad...)...)
			}
			if v := view(); len(v.Origins) != 2 {
				t.Errorf("after refused changes: %+v", v)
			}
			e.fails(exitFailure, "no app named", "", "apps", "bff", "nope", "--origin", "https://app.example")

			e.ok("", "apps", "bff", "spa", "--off")
			if v := view(); v.Enabled {
				t.Errorf("after --off: %+v", v)
			}
			if out, _ := e.ok("", "apps", "bff", "spa", "--off"); !strings.Contains(out, "is off") { // off already: nothing to do
				t.Errorf("--off twice says:\n%s", out)
			}

			// apps update's --bff-* flags are the same settings.
			out, _ = e.ok("", "apps", "update", "spa", "--bff-origin", "https://spa.example", "--bff-token-scopes", "streaming")
			if !strings.Contains(out, "bff_origins, bff_token_scopes") {
				t.Errorf("apps update --bff-origin says:\n%s", out)
			}
			if v := view(); !v.Enabled || v.Origins[0] != "https://spa.example" || !v.TokenMediating {
				t.Errorf("after apps update --bff-origin: %+v", v)
			}
			out, _ = e.ok("", "apps", "get", "spa")
			if !strings.Contains(out, "bff origins:") || !strings.Contains(out, "https://spa.example") {
				t.Errorf("apps get shows no BFF:\n%s", out)
			}
			e.ok("", "apps", "update", "spa", "--bff-origin", "")
			if v := view(); v.Enabled {
				t.Errorf("after apps update --bff-origin \"\": %+v", v)
			}
		})
	}
}
