package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
)

// TestAuditCommands: admin changes made with the CLI are in the trail, with
// the operator as the actor and never a secret; audit list and export read
// it (JSON lines, cursors); audit fingerprint reproduces a stored
// fingerprint from the secret on standard input, under every key version.
func TestAuditCommands(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("shop")
	keyOut, _ := e.ok("", "apikeys", "create", "--app", "shop", "--name", "worker")
	key := strings.TrimSpace(lineWith(keyOut, "sk_"))
	key = key[strings.Index(key, "sk_"):]
	key = strings.Fields(key)[0]

	// A vend's record, as the server writes it, with the fingerprint of a token.
	ring, err := seal.LoadKeyFile(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprinter(ring)
	if err != nil {
		t.Fatal(err)
	}
	token := spotoken.Secret("BQDvendedAccessToken123")
	store := e.open()
	now := time.Now().Add(-2 * time.Minute)
	var recs []spotoken.AuditRecord
	for i := range 5 {
		recs = append(recs, spotoken.AuditRecord{At: now.Add(time.Duration(i) * time.Second), Action: spotoken.AuditTokenVend, AppID: "shop",
			ConnectionID: "u1", ActorType: spotoken.ActorAPIKey, ActorID: "key_x", ClientIP: "192.0.2.1", Status: 200, Outcome: "ok",
			Fingerprint: fp.Fingerprint(token)})
	}
	if err := store.AppendAudit(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	store.Close()

	out, _ := e.ok("", "audit", "list", "--app", "shop", "--json", "--limit", "1000")
	var actions []string
	for line := range strings.Lines(out) {
		var v server.AuditRecordView
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("audit list --json line %q: %v", line, err)
		}
		actions = append(actions, v.Action)
		if v.Action == "api_key.create" && (v.Actor.Type != spotoken.ActorAdmin || v.Version != 1) {
			t.Errorf("api_key.create record: %+v", v)
		}
	}
	if got := strings.Join(actions, ","); !strings.Contains(got, "api_key.create") || !strings.Contains(got, "app.create") || strings.Count(got, "token.vend") != 5 {
		t.Errorf("audit list actions: %s", got)
	}
	if strings.Contains(out, key) {
		t.Error("the API key is in the audit trail")
	}
	// Paging: two at a time, then --after.
	_, stderr := e.ok("", "audit", "list", "--app", "shop", "--connection", "u1", "--limit", "2")
	if !strings.Contains(stderr, "--after ") {
		t.Errorf("no cursor for the next page: %q", stderr)
	}
	// Export: everything settled, in order; the next run from the cursor has nothing new.
	exp, stderr := e.ok("", "audit", "export", "--app", "shop", "--settle", "0s")
	n := 0
	sc := bufio.NewScanner(strings.NewReader(exp))
	for sc.Scan() {
		n++
	}
	if n < 7 {
		t.Errorf("export wrote %d lines, want the 5 vends and the admin changes", n)
	}
	cursor := strings.TrimSpace(stderr[strings.LastIndex(stderr, "--after ")+len("--after "):])
	exp2, _ := e.ok("", "audit", "export", "--app", "shop", "--settle", "0s", "--after", cursor)
	if exp2 != "" {
		t.Errorf("export after the cursor: %q", exp2)
	}
	// Records younger than --settle wait for the next export.
	if young, _ := e.ok("", "audit", "export", "--app", "shop", "--settle", "1h"); young != "" {
		t.Errorf("export with --settle 1h wrote %q", young)
	}

	// The fingerprint of the token matches the stored one.
	fps, _ := e.ok(token.Reveal()+"\n", "audit", "fingerprint")
	if first := strings.SplitN(fps, "\n", 2)[0]; first != recs[0].Fingerprint || !strings.Contains(exp, first) {
		t.Errorf("audit fingerprint = %q, stored %q", fps, recs[0].Fingerprint)
	}
	e.fails(exitUsage, "give the value", "", "audit", "fingerprint")
	e.fails(exitUsage, "--connection needs --app", "", "audit", "list", "--connection", "u1")
	e.fails(exitUsage, "--since", "", "audit", "list", "--since", "yesterday")
}
