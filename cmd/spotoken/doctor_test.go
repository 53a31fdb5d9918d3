package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// doctorEnv is an emulator run by the real command (so its flags are the
// CLI's) and a database with an app registered with 'apps create'.
type doctorEnv struct {
	*adminEnv
	emu string
}

const doctorSecret = "doctor-secret-value-1234"

func newDoctorEnv(t *testing.T, emulatorArgs ...string) *doctorEnv {
	t.Helper()
	emu, _, _ := startEmulator(t, append([]string{"--client", "app:" + doctorSecret + "=https://broker.example/callback"}, emulatorArgs...)...)
	return &doctorEnv{adminEnv: newAdminEnv(t, "sqlite"), emu: emu}
}

// doctor runs 'spotoken doctor --json' against the emulator and decodes
// the report; it checks that the exit status agrees with the report and
// that no secret was printed.
func (e *doctorEnv) doctor(stdin string, args ...string) doctorReport {
	e.t.Helper()
	args = append([]string{"doctor", "--json", "--accounts-url", e.emu, "--api-url", e.emu}, args...)
	stdout, stderr, code := e.run(stdin, args...)
	var r doctorReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		e.t.Fatalf("spotoken %s: exit %d, %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, err, stdout, stderr)
	}
	if want := map[bool]int{true: exitOK, false: exitFailure}[r.OK]; code != want {
		e.t.Errorf("exit %d with ok=%v, want %d", code, r.OK, want)
	}
	if strings.Contains(stdout+stderr, doctorSecret) || strings.Contains(stdout+stderr, "wrong-secret-value") {
		e.t.Errorf("doctor printed a client secret:\n%s\n%s", stdout, stderr)
	}
	return r
}

// verdicts maps "name[ target]" to each check's verdict.
func verdicts(r doctorReport) map[string]string {
	out := map[string]string{}
	for _, c := range r.Checks {
		k := c.Name
		if c.Target != "" {
			k += " " + c.Target
		}
		out[k] = c.Verdict
	}
	return out
}

func wantVerdicts(t *testing.T, r doctorReport, want map[string]string) {
	t.Helper()
	got := verdicts(r)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (report %+v)", k, got[k], v, r.Checks)
		}
	}
	if len(got) != len(want) {
		t.Errorf("checks %v, want %v", got, want)
	}
}

// TestDoctor: spotoken doctor passes a correctly set-up app against the
// emulator, in both eras of the Web API's 401 (and names what it saw), and
// names the broken setting when the secret is wrong, a redirect URI is not
// registered, or a scope is unknown.
func TestDoctor(t *testing.T) {
	const registered = "https://broker.example/callback"
	t.Run("correct app, 2026 401", func(t *testing.T) {
		e := newDoctorEnv(t)
		e.ok(doctorSecret, "apps", "create", "--name", "good", "--client-id", "app", "--redirect-uri", registered,
			"--scopes", "user-read-email user-read-currently-playing", "--client-secret-stdin")
		r := e.doctor("", "--app", "good")
		wantVerdicts(t, r, map[string]string{"client_credentials": "pass", "redirect_uri " + registered: "pass", "web_api_401": "pass", "scopes": "pass"})
		seen := r.Checks[2].Seen
		if seen["message"] != "Missing/invalid/expired access token" || seen["wording"] != "Spotify's wording since 2026-07" || seen["status"] != "401" {
			t.Errorf("web_api_401 seen %v", seen)
		}
		if !r.OK || r.App != "good" {
			t.Errorf("report: ok %v app %q", r.OK, r.App)
		}
	})
	t.Run("correct app, legacy 401", func(t *testing.T) {
		e := newDoctorEnv(t, "--legacy-401")
		e.ok(doctorSecret, "apps", "create", "--name", "good", "--client-id", "app", "--redirect-uri", registered, "--client-secret-stdin")
		r := e.doctor("", "--app", "good")
		wantVerdicts(t, r, map[string]string{"client_credentials": "pass", "redirect_uri " + registered: "pass", "web_api_401": "pass", "scopes": "pass"})
		seen := r.Checks[2].Seen
		if seen["message"] != "Invalid access token" || seen["wording"] != "Spotify's wording before 2026-07" ||
			!strings.Contains(seen["www_authenticate"], `error="invalid_token"`) {
			t.Errorf("web_api_401 seen %v", seen)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		e := newDoctorEnv(t)
		e.ok("wrong-secret-value", "apps", "create", "--name", "bad", "--client-id", "app", "--redirect-uri", registered, "--client-secret-stdin")
		r := e.doctor("", "--app", "bad")
		wantVerdicts(t, r, map[string]string{"client_credentials": "fail", "redirect_uri " + registered: "pass", "web_api_401": "pass", "scopes": "pass"})
		if c := r.Checks[0]; c.Seen["error"] != "invalid_client" || !strings.Contains(c.Detail, "secret") {
			t.Errorf("client_credentials: %+v", c)
		}
	})
	t.Run("unregistered redirect URI", func(t *testing.T) {
		e := newDoctorEnv(t)
		const other = "https://broker.example/callback/"
		e.ok(doctorSecret, "apps", "create", "--name", "bad", "--client-id", "app", "--redirect-uri", registered,
			"--redirect-uri", other, "--client-secret-stdin")
		r := e.doctor("", "--app", "bad")
		wantVerdicts(t, r, map[string]string{"client_credentials": "pass", "redirect_uri " + registered: "pass",
			"redirect_uri " + other: "fail", "web_api_401": "pass", "scopes": "pass"})
		if c := r.Checks[2]; !strings.Contains(c.Seen["page"], "INVALID_CLIENT: Invalid redirect URI") {
			t.Errorf("the refused URI's page: %+v", c.Seen)
		}
	})
	t.Run("unknown scope", func(t *testing.T) {
		e := newDoctorEnv(t)
		r := e.doctor(doctorSecret, "--client-id", "app", "--redirect-uri", registered, "--scopes", "user-read-email,user-read-everything",
			"--client-secret-stdin")
		wantVerdicts(t, r, map[string]string{"client_credentials": "pass", "redirect_uri " + registered: "pass", "web_api_401": "pass", "scopes": "fail"})
		if c := r.Checks[3]; !strings.Contains(c.Detail, "user-read-everything") || strings.Contains(c.Detail, "user-read-email ") {
			t.Errorf("scopes: %q, want the unknown scope named", c.Detail)
		}
	})
	t.Run("public app", func(t *testing.T) {
		e := newDoctorEnv(t, "--client", "pub=http://127.0.0.1/callback")
		r := e.doctor("", "--client-id", "pub", "--redirect-uri", "http://127.0.0.1:8080/callback")
		wantVerdicts(t, r, map[string]string{"client_credentials": "skip", "redirect_uri http://127.0.0.1:8080/callback": "pass", "web_api_401": "pass", "scopes": "pass"})
	})
	t.Run("unknown client", func(t *testing.T) {
		e := newDoctorEnv(t)
		r := e.doctor("", "--client-id", "nobody", "--redirect-uri", registered)
		wantVerdicts(t, r, map[string]string{"client_credentials": "skip", "redirect_uri " + registered: "fail", "web_api_401": "pass", "scopes": "pass"})
		if c := r.Checks[1]; !strings.Contains(c.Seen["page"], "INVALID_CLIENT: Invalid client") {
			t.Errorf("page %q, want Spotify's own words for it", c.Seen["page"])
		}
	})
}

// TestDoctorDrift: against services that answer otherwise, the doctor says
// what it cannot tell, and fails a Web API whose 401 for a made-up token
// spotoken would not refresh on.
func TestDoctorDrift(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authorize": // accepts anything: so its acceptance proves nothing
			http.Redirect(w, r, "/login", http.StatusFound)
		case "/v1/me":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"status":401,"message":"Permissions missing"}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	e := &doctorEnv{adminEnv: newAdminEnv(t, "sqlite"), emu: fake.URL}
	r := e.doctor("", "--client-id", "app", "--redirect-uri", "https://broker.example/callback", "--scopes", "user-read-email")
	wantVerdicts(t, r, map[string]string{"client_credentials": "skip", "redirect_uri https://broker.example/callback": "warn",
		"web_api_401": "fail", "scopes": "pass"})
}

func TestDoctorUsageErrors(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"doctor"}, "--app NAME"},
		{[]string{"doctor", "--app", "x", "--client-id", "y"}, "not both"},
		{[]string{"doctor", "--client-id", "y"}, "--redirect-uri is required"},
		{[]string{"doctor", "--client-id", "y", "--redirect-uri", "https://x/cb", "--api-url", "ftp://x"}, "--api-url"},
		{[]string{"doctor", "--client-id", "y", "--redirect-uri", "https://x/cb", "--timeout", "0s"}, "--timeout"},
	} {
		e.fails(exitUsage, tc.want, "", tc.args...)
	}
	e.createApp("app")
	e.fails(exitFailure, `no app named "missing"`, "", "doctor", "--app", "missing")
}
