package admin_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// auditEnv is a Service with Config.Audit over a SQLite file, and a second
// connection to the file to break the audit table with.
type auditEnv struct {
	store   *sqlite.DB
	path    string
	svc     *admin.Service
	changes []admin.Change
	now     time.Time
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{3}}}, 1)
	e := &auditEnv{path: filepath.Join(t.TempDir(), "db"), now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return e.now }
	store, err := sqlite.Open(ctx, sqlite.Config{Path: e.path, Keys: keys, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	e.svc, err = admin.New(admin.Config{Store: store, Now: clock, Audit: true,
		Record:            func(_ context.Context, c admin.Change) { e.changes = append(e.changes, c) },
		CheckClientSecret: func(context.Context, *spotoken.App) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// records returns the stored audit records, oldest first, as "action
// app target fields" lines.
func (e *auditEnv) records(t *testing.T) []string {
	t.Helper()
	recs, err := e.store.AuditRecords(ctx, spotoken.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.ActorType != spotoken.ActorAdmin || r.ActorID != "ops" || r.ActorLabel != "cli:ops" || !r.At.Equal(e.now) {
			t.Errorf("record %+v: want the CLI's operator ops, at the service's clock", r)
		}
		out = append(out, strings.TrimSpace(fmt.Sprint(r.Action, " ", r.AppID, " ", r.Detail["target"], " ", r.Detail["fields"])))
	}
	return out
}

// TestChangesAuditedWithTheChange: with Config.Audit every change the
// service makes stores its record (one per store write: an update of an
// app's settings and of its BFF has two), and reaches Record as Recorded.
func TestChangesAuditedWithTheChange(t *testing.T) {
	e := newAuditEnv(t)
	if _, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid", ClientSecret: "one-secret", WebhookURL: "https://a.example/h"}); err != nil {
		t.Fatal(err)
	}
	cid, two, origins := "cid2", spotoken.Secret("two-secret"), []string{"https://spa.example"}
	if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{ClientID: &cid, BrowserApp: &admin.BrowserAppPatch{Origins: &origins}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{ClientSecret: &two}); err != nil {
		t.Fatal(err)
	}
	none := []string{}
	if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{BrowserApp: &admin.BrowserAppPatch{Origins: &none}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RetireClientSecret(ctx, cli, "a", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.RotateWebhookSecret(ctx, cli, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RetireWebhookSecret(ctx, cli, "a"); err != nil {
		t.Fatal(err)
	}
	_, key, err := e.svc.CreateAPIKey(ctx, cli, "a", "worker")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeAPIKey(ctx, cli, "a", key.ID); err != nil {
		t.Fatal(err)
	}
	_, adm, err := e.svc.CreateAdminKey(ctx, cli, "oncall")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeAdminKey(ctx, cli, adm.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RedeliverEvents(ctx, cli, "a", spotoken.EventGaveUp); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteApp(ctx, cli, "a"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"app.create a",
		"app.update a  client_id",
		"app.update a  bff_origins",
		"app.update a  client_secret",
		"app.update a  bff_origins",
		"app.client_secret.retire a",
		"app.webhook_secret.rotate a",
		"app.webhook_secret.retire a",
		"api_key.create a " + key.ID,
		"api_key.revoke a " + key.ID,
		"admin_key.create  " + adm.ID,
		"admin_key.revoke  " + adm.ID,
		"event.redeliver a gave_up",
		"app.delete a",
	}
	if got := e.records(t); !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(e.changes) != len(want)-1 { // the first update is one change with two records
		t.Errorf("%d changes reported, want %d", len(e.changes), len(want)-1)
	}
	for _, c := range e.changes {
		if !c.Recorded {
			t.Errorf("change %s reported without Recorded", c.Action)
		}
	}
}

// TestChangesFailClosedOnAudit: when the audit record cannot be written
// (the database refuses it), the change fails and is not made, and nothing
// reports it made.
func TestChangesFailClosedOnAudit(t *testing.T) {
	e := newAuditEnv(t)
	if _, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid", ClientSecret: "one-secret", WebhookURL: "https://a.example/h"}); err != nil {
		t.Fatal(err)
	}
	_, key, err := e.svc.CreateAPIKey(ctx, cli, "a", "worker")
	if err != nil {
		t.Fatal(err)
	}
	_, adm, err := e.svc.CreateAdminKey(ctx, cli, "oncall")
	if err != nil {
		t.Fatal(err)
	}
	two := spotoken.Secret("two-secret")
	if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{ClientSecret: &two}); err != nil {
		t.Fatal(err)
	}
	before, err := e.store.App(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	recorded := len(e.records(t))

	// The audit table refuses every new row, as a full disk or a broken
	// table would.
	raw, err := sql.Open("sqlite", e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(ctx, `CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records
		BEGIN SELECT RAISE(ABORT, 'the audit trail refuses this record'); END`); err != nil {
		t.Fatal(err)
	}
	e.changes = nil
	cid, origins := "changed", []string{"https://spa.example"}
	for _, tt := range []struct {
		name string
		do   func() error
	}{
		{"CreateApp", func() error {
			_, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "b", ClientID: "cid"})
			return err
		}},
		{"UpdateApp", func() error {
			_, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{ClientID: &cid})
			return err
		}},
		{"UpdateApp BFF", func() error {
			_, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{BrowserApp: &admin.BrowserAppPatch{Origins: &origins}})
			return err
		}},
		{"RetireClientSecret", func() error { _, err := e.svc.RetireClientSecret(ctx, cli, "a", true); return err }},
		{"RotateWebhookSecret", func() error { _, _, err := e.svc.RotateWebhookSecret(ctx, cli, "a"); return err }},
		{"CreateAPIKey", func() error { _, _, err := e.svc.CreateAPIKey(ctx, cli, "a", "second"); return err }},
		{"RevokeAPIKey", func() error { return e.svc.RevokeAPIKey(ctx, cli, "a", key.ID) }},
		{"CreateAdminKey", func() error { _, _, err := e.svc.CreateAdminKey(ctx, cli, "second"); return err }},
		{"RevokeAdminKey", func() error { return e.svc.RevokeAdminKey(ctx, cli, adm.ID) }},
		{"DeleteApp", func() error { return e.svc.DeleteApp(ctx, cli, "a") }},
	} {
		if err := tt.do(); err == nil || !strings.Contains(err.Error(), "refuses this record") {
			t.Errorf("%s: %v, want the audit write's error", tt.name, err)
		}
	}
	if len(e.changes) != 0 {
		t.Errorf("changes reported made: %+v", e.changes)
	}
	after, err := e.store.App(ctx, "a")
	if err != nil {
		t.Fatalf("the app is gone: %v", err)
	}
	if after.ClientID != before.ClientID || after.PreviousClientSecret != before.PreviousClientSecret ||
		after.WebhookSecret != before.WebhookSecret || after.PreviousWebhookSecret != "" {
		t.Error("the app's settings changed without their record")
	}
	if _, err := e.store.App(ctx, "b"); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("app b was created without its record: %v", err)
	}
	if b, err := e.store.BrowserApp(ctx, "a"); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("the BFF was turned on without its record: %v, %v", b, err)
	}
	if keys, err := e.store.APIKeys(ctx, "a"); err != nil || len(keys) != 1 || !keys[0].RevokedAt.IsZero() {
		t.Errorf("API keys %+v, %v: want the one key, not revoked", keys, err)
	}
	if keys, err := e.store.AdminKeys(ctx); err != nil || len(keys) != 1 || keys[0].Revoked() {
		t.Errorf("admin keys %+v, %v: want the one key, not revoked", keys, err)
	}
	if n := len(e.records(t)); n != recorded {
		t.Errorf("%d records, want the %d from before", n, recorded)
	}
}
