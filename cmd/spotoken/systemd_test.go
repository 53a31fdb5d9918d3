package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnit: deploy/systemd/spotoken.service runs a command that
// exists with settings that are real serve flags with valid values, keeps
// its database in its state directory, gives serve's graceful shutdown the
// time it takes, and keeps its hardening. (systemd-analyze verify checks
// the syntax: deploy/systemd/verify.sh, run by .ci/run.)
func TestSystemdUnit(t *testing.T) {
	f, err := os.Open("../../deploy/systemd/spotoken.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q", line)
		}
		settings[k] = append(settings[k], v)
	}

	exec := strings.Fields(settings["ExecStart"][0])
	if len(exec) < 2 || exec[0] != "/usr/local/bin/spotoken" || exec[1] != "serve" {
		t.Fatalf("ExecStart = %v, want /usr/local/bin/spotoken serve", exec)
	}
	serve := newServeCmd(&IOStreams{})
	for _, env := range settings["Environment"] {
		name, value, _ := strings.Cut(env, "=")
		flag, ok := strings.CutPrefix(name, "SPOTOKEN_")
		if !ok {
			t.Errorf("Environment=%s is not a SPOTOKEN_<FLAG> variable", env)
			continue
		}
		f := serve.Flags().Lookup(strings.ReplaceAll(strings.ToLower(flag), "_", "-"))
		if f == nil {
			t.Errorf("Environment=%s: serve has no flag for it", env)
			continue
		}
		if err := f.Value.Set(value); err != nil {
			t.Errorf("Environment=%s: %v", env, err)
		}
	}
	if db := serve.Flags().Lookup("db").Value.String(); !strings.HasPrefix(db, "/var/lib/"+settings["StateDirectory"][0]+"/") {
		t.Errorf("SPOTOKEN_DB %q is not in the StateDirectory %v", db, settings["StateDirectory"])
	}
	if serve.Flags().Lookup("admin-addr").Value.String() == "" {
		t.Error("the unit serves metrics and the dashboard beside the API: set SPOTOKEN_ADMIN_ADDR")
	}
	stop, err := time.ParseDuration(settings["TimeoutStopSec"][0])
	shutdown, _ := time.ParseDuration(serve.Flags().Lookup("shutdown-timeout").DefValue)
	if err != nil || stop <= shutdown {
		t.Errorf("TimeoutStopSec=%v, want more than serve's --shutdown-timeout %v", settings["TimeoutStopSec"], shutdown)
	}
	for k, want := range map[string]string{
		"User": "spotoken", "Group": "spotoken", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "", "UMask": "0077",
		"ExecReload": "/bin/kill -HUP $MAINPID", "StateDirectoryMode": "0700",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %q", k, got, want)
		}
	}
}
