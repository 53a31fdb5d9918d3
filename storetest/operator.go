package storetest

// The conformance cases of the operator's stores (issue 15): rotation of an
// app's secrets, admin keys, app tokens and their lease, the event log and
// redelivery, the search of connections across apps.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// stage moves app id's secrets to the previous columns and gives it new
// ones, as a rotation does.
func (h *harness) stage(t *testing.T, id, tag string) *spotoken.App {
	t.Helper()
	a, err := h.store.UpdateApp(ctx, id, func(a *spotoken.App) error {
		a.PreviousClientSecret, a.ClientSecret = a.ClientSecret, marker("client-secret-"+tag, id)
		a.PreviousWebhookSecret, a.WebhookSecret = a.WebhookSecret, marker("webhook-secret-"+tag, id)
		return nil
	})
	if err != nil {
		t.Fatalf("stage new secrets of %s: %v", id, err)
	}
	return a
}

// testAppSecretRotation: the previous secrets of a rotation round-trip
// sealed in columns of their own, bound to their app and column, and
// retiring one erases its ciphertext.
func testAppSecretRotation(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	before := h.backend.AppCiphertext(t, "a", "client_secret")
	staged := h.stage(t, "a", "new")
	got, err := h.store.App(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, staged); d != "" {
		t.Errorf("staged app round trip (-got +want):\n%s", d)
	}
	if got.ClientSecret != marker("client-secret-new", "a") || got.PreviousClientSecret != marker("client-secret", "a") ||
		got.WebhookSecret != marker("webhook-secret-new", "a") || got.PreviousWebhookSecret != marker("webhook-secret", "a") {
		t.Errorf("staged secrets: %q %q %q %q", got.ClientSecret.Reveal(), got.PreviousClientSecret.Reveal(),
			got.WebhookSecret.Reveal(), got.PreviousWebhookSecret.Reveal())
	}
	if d := diff(got.ClientSecrets(), []spotoken.Secret{marker("client-secret-new", "a"), marker("client-secret", "a")}); d != "" {
		t.Errorf("ClientSecrets order (-got +want):\n%s", d)
	}
	cts := map[string][]byte{}
	for _, column := range []string{"client_secret", "webhook_secret", "previous_client_secret", "previous_webhook_secret"} {
		ct := h.backend.AppCiphertext(t, "a", column)
		if len(ct) == 0 {
			t.Errorf("%s: no ciphertext stored", column)
		}
		for other, oct := range cts {
			if bytes.Equal(ct, oct) {
				t.Errorf("%s holds the ciphertext of %s", column, other)
			}
		}
		cts[column] = ct
	}
	if bytes.Equal(cts["client_secret"], before) {
		t.Error("the staged client secret kept the old ciphertext")
	}

	// Bound to the column and the app: moved ciphertexts do not open.
	for _, tt := range []struct {
		name, column string
		ct           []byte
	}{
		{"current client secret as previous", "previous_client_secret", cts["client_secret"]},
		{"previous client secret as current", "client_secret", cts["previous_client_secret"]},
		{"previous webhook secret as previous client secret", "previous_client_secret", cts["previous_webhook_secret"]},
		{"client secret of another app as previous", "previous_client_secret", h.backend.AppCiphertext(t, "b", "client_secret")},
	} {
		orig := h.backend.AppCiphertext(t, "a", tt.column)
		h.backend.SetAppCiphertext(t, "a", tt.column, tt.ct)
		if _, err := h.store.App(ctx, "a"); !errors.Is(err, seal.ErrDecrypt) || !strings.Contains(err.Error(), "apps."+tt.column+" of a") {
			t.Errorf("%s: %v, want a decryption error naming apps.%s of a", tt.name, err, tt.column)
		}
		h.backend.SetAppCiphertext(t, "a", tt.column, orig)
	}

	// An update that leaves the previous secrets alone keeps their ciphertexts.
	if _, err := h.store.UpdateApp(ctx, "a", func(a *spotoken.App) error { a.WebhookURL = "https://app.example/v2"; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, column := range []string{"previous_client_secret", "previous_webhook_secret"} {
		if !bytes.Equal(h.backend.AppCiphertext(t, "a", column), cts[column]) {
			t.Errorf("an update of the webhook URL re-sealed %s", column)
		}
	}

	// Retiring erases the previous secret's ciphertext and keeps the rest.
	if _, err := h.store.UpdateApp(ctx, "a", func(a *spotoken.App) error {
		a.PreviousClientSecret, a.PreviousWebhookSecret = "", ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, column := range []string{"previous_client_secret", "previous_webhook_secret"} {
		if ct := h.backend.AppCiphertext(t, "a", column); len(ct) != 0 {
			t.Errorf("retired %s: %d bytes stored, want none", column, len(ct))
		}
	}
	got, _ = h.store.App(ctx, "a")
	if got.PreviousClientSecret != "" || got.PreviousWebhookSecret != "" || got.ClientSecret != marker("client-secret-new", "a") ||
		len(got.ClientSecrets()) != 1 {
		t.Errorf("after retiring: %+v", got)
	}

	// CreateApp stores previous secrets too (an app restored mid-rotation).
	c := &spotoken.App{ID: "c", ClientID: "cc", ClientSecret: "new", PreviousClientSecret: "old", PreviousWebhookSecret: marker("wh-prev", "c")}
	if err := h.store.CreateApp(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := h.store.App(ctx, "c"); err != nil || got.PreviousClientSecret != "old" || got.PreviousWebhookSecret != marker("wh-prev", "c") {
		t.Errorf("CreateApp with previous secrets: %+v, %v", got, err)
	}
}

func testAdminKeys(t *testing.T, h *harness) {
	k1 := &spotoken.AdminKey{ID: "adm1", Name: "alice", Prefix: "sa_1111", Hash: sha256.Sum256([]byte("sa_1111-rest"))}
	if err := h.store.CreateAdminKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
	want := *k1
	want.CreatedAt = h.clock.Now()
	got, err := h.store.AdminKeyByHash(ctx, k1.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, &want); d != "" {
		t.Errorf("AdminKey round trip (-got +want):\n%s", d)
	}
	wantErr(t, "duplicate hash", h.store.CreateAdminKey(ctx, &spotoken.AdminKey{ID: "adm9", Hash: k1.Hash}), spotoken.ErrConflict)
	wantErr(t, "duplicate id", h.store.CreateAdminKey(ctx, &spotoken.AdminKey{ID: "adm1", Hash: sha256.Sum256([]byte("x"))}), spotoken.ErrConflict)
	_, err = h.store.AdminKeyByHash(ctx, sha256.Sum256([]byte("unknown")))
	wantErr(t, "unknown hash", err, spotoken.ErrNotFound)

	// An API key's hash is no admin key, nor the other way round.
	h.newApp(t, "a")
	apiKey := &spotoken.APIKey{ID: "k1", AppID: "a", Hash: sha256.Sum256([]byte("sk_shared"))}
	if err := h.store.CreateAPIKey(ctx, apiKey); err != nil {
		t.Fatal(err)
	}
	_, err = h.store.AdminKeyByHash(ctx, apiKey.Hash)
	wantErr(t, "an API key's hash as an admin key", err, spotoken.ErrNotFound)
	_, err = h.store.APIKeyByHash(ctx, k1.Hash)
	wantErr(t, "an admin key's hash as an API key", err, spotoken.ErrNotFound)

	h.clock.Advance(time.Second)
	k2 := &spotoken.AdminKey{ID: "adm2", Name: "bob", Prefix: "sa_2222", Hash: sha256.Sum256([]byte("sa_2222-rest"))}
	if err := h.store.CreateAdminKey(ctx, k2); err != nil {
		t.Fatal(err)
	}
	keys, err := h.store.AdminKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != "adm1" || keys[1].ID != "adm2" {
		t.Fatalf("AdminKeys = %v, %v; want adm1, adm2", keys, err)
	}

	used := h.clock.Now().Add(time.Minute)
	if err := h.store.TouchAdminKey(ctx, "adm1", used); err != nil {
		t.Fatal(err)
	}
	if err := h.store.TouchAdminKey(ctx, "adm1", used.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	revoked := h.clock.Now().Add(2 * time.Minute)
	if err := h.store.RevokeAdminKey(ctx, "adm1", revoked); err != nil {
		t.Fatal(err)
	}
	if err := h.store.RevokeAdminKey(ctx, "adm1", revoked.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = h.store.AdminKeyByHash(ctx, k1.Hash)
	if !got.LastUsedAt.Equal(used) || !got.RevokedAt.Equal(revoked) || !got.Revoked() {
		t.Errorf("after touch and revoke: last used %v, revoked %v; want %v, %v", got.LastUsedAt, got.RevokedAt, used, revoked)
	}
	if got, _ := h.store.AdminKeyByHash(ctx, k2.Hash); got.Revoked() || !got.LastUsedAt.IsZero() {
		t.Errorf("adm2 changed by calls about adm1: %+v", got)
	}
	wantErr(t, "touch unknown", h.store.TouchAdminKey(ctx, "adm404", used), spotoken.ErrNotFound)
	wantErr(t, "revoke unknown", h.store.RevokeAdminKey(ctx, "adm404", used), spotoken.ErrNotFound)
}

func testAppTokens(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	_, err := h.store.AppToken(ctx, "a")
	wantErr(t, "AppToken before any lease", err, spotoken.ErrNotFound)
	const ttl = 30 * time.Second
	_, err = h.store.AcquireAppTokenLease(ctx, "nope", "A", ttl)
	wantErr(t, "lease of an unknown app", err, spotoken.ErrNotFound)
	tok := &spotoken.AppToken{AppID: "a", ClientID: "client-a", AccessToken: marker("app-token", "a"), Expiry: h.clock.Now().Add(time.Hour)}
	wantErr(t, "save without the lease", h.store.SaveAppToken(ctx, "A", tok), spotoken.ErrLeaseLost)

	l, err := h.store.AcquireAppTokenLease(ctx, "a", "A", ttl)
	if err != nil || l.Owner != "A" || !l.ExpiresAt.Equal(h.clock.Now().Add(ttl)) {
		t.Fatalf("AcquireAppTokenLease A = %+v, %v", l, err)
	}
	row, err := h.store.AppToken(ctx, "a")
	if err != nil || row.Version != 0 || row.AccessToken != "" || row.Lease.Owner != "A" || row.Valid(h.clock.Now(), 0) {
		t.Fatalf("the row a lease made: %+v, %v", row, err)
	}
	_, err = h.store.AcquireAppTokenLease(ctx, "a", "B", ttl)
	wantErr(t, "B while A holds", err, spotoken.ErrLeaseHeld)
	wantErr(t, "B saves while A holds", h.store.SaveAppToken(ctx, "B", tok), spotoken.ErrLeaseLost)
	if _, err := h.store.AcquireAppTokenLease(ctx, "b", "B", ttl); err != nil {
		t.Errorf("another app's lease: %v", err)
	}
	if err := h.store.SaveAppToken(ctx, "A", tok); err != nil {
		t.Fatal(err)
	}
	row, err = h.store.AppToken(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := &spotoken.AppToken{AppID: "a", ClientID: "client-a", AccessToken: tok.AccessToken, Expiry: tok.Expiry, Version: 1,
		Lease: spotoken.Lease{Owner: "A", ExpiresAt: h.clock.Now().Add(ttl)}, UpdatedAt: h.clock.Now()}
	if d := diff(row, want); d != "" {
		t.Errorf("AppToken after save (-got +want):\n%s", d)
	}
	if !row.Valid(h.clock.Now(), 59*time.Minute) || row.Valid(h.clock.Now(), time.Hour) {
		t.Errorf("Valid: a token expiring in an hour")
	}
	wantErr(t, "B releases A's lease", h.store.ReleaseAppTokenLease(ctx, "a", "B"), spotoken.ErrLeaseLost)
	if err := h.store.ReleaseAppTokenLease(ctx, "a", "A"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "release twice", h.store.ReleaseAppTokenLease(ctx, "a", "A"), spotoken.ErrLeaseLost)
	wantErr(t, "release without a row", h.store.ReleaseAppTokenLease(ctx, "nope", "A"), spotoken.ErrNotFound)
	if row, _ := h.store.AppToken(ctx, "a"); row.Lease.Owner != "" || row.AccessToken != tok.AccessToken {
		t.Errorf("after release: %+v", row)
	}

	// An expired lease is taken over; its holder can no longer save.
	if _, err := h.store.AcquireAppTokenLease(ctx, "a", "A", ttl); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(ttl)
	wantErr(t, "save under an expired lease", h.store.SaveAppToken(ctx, "A", tok), spotoken.ErrLeaseLost)
	if l, err := h.store.AcquireAppTokenLease(ctx, "a", "B", ttl); err != nil || l.Owner != "B" {
		t.Fatalf("B after expiry: %+v, %v", l, err)
	}
	tok2 := &spotoken.AppToken{AppID: "a", ClientID: "client-a", AccessToken: marker("app-token-2", "a"), Expiry: h.clock.Now().Add(time.Hour)}
	if err := h.store.SaveAppToken(ctx, "B", tok2); err != nil {
		t.Fatal(err)
	}
	if row, _ := h.store.AppToken(ctx, "a"); row.Version != 2 || row.AccessToken != tok2.AccessToken {
		t.Errorf("after B's save: %+v", row)
	}

	// Each app has its own token row.
	if _, err := h.store.AcquireAppTokenLease(ctx, "b", "B", ttl); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SaveAppToken(ctx, "B", &spotoken.AppToken{AppID: "b", AccessToken: marker("app-token", "b"), Expiry: h.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	// Deleting the app deletes its token.
	if err := h.store.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = h.store.AppToken(ctx, "a")
	wantErr(t, "AppToken after DeleteApp", err, spotoken.ErrNotFound)
	if row, err := h.store.AppToken(ctx, "b"); err != nil || row.AccessToken != marker("app-token", "b") {
		t.Errorf("app b's token after deleting a: %+v, %v", row, err)
	}
}

// testAppTokenLeaseContention: of many owners racing for an app token's
// lease, one holds it at a time, and each holder's save lands.
func testAppTokenLeaseContention(t *testing.T, h *harness) {
	h.newApp(t, "a")
	const owners, rounds = 30, 10
	var holders, maxHolders, saved atomic.Int32
	var wg sync.WaitGroup
	for i := range owners {
		wg.Go(func() {
			owner := fmt.Sprintf("replica-%d", i)
			for r := range rounds {
				_, err := h.store.AcquireAppTokenLease(ctx, "a", owner, 30*time.Second)
				if errors.Is(err, spotoken.ErrLeaseHeld) {
					continue
				}
				if err != nil {
					t.Errorf("%s: AcquireAppTokenLease: %v", owner, err)
					return
				}
				n := holders.Add(1)
				for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
				}
				tok := &spotoken.AppToken{AppID: "a", AccessToken: spotoken.Secret(fmt.Sprintf("%s-%d", owner, r)), Expiry: h.clock.Now().Add(time.Hour)}
				if err := h.store.SaveAppToken(ctx, owner, tok); err != nil {
					t.Errorf("%s: save under the lease: %v", owner, err)
				} else {
					saved.Add(1)
				}
				holders.Add(-1)
				if err := h.store.ReleaseAppTokenLease(ctx, "a", owner); err != nil {
					t.Errorf("%s: release: %v", owner, err)
				}
			}
		})
	}
	wg.Wait()
	row, err := h.store.AppToken(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if maxHolders.Load() != 1 || saved.Load() == 0 || row.Version != int64(saved.Load()) || row.Lease.Owner != "" {
		t.Errorf("max holders %d, %d saves, version %d, lease %+v; want 1 holder at a time, a version per save, no lease left",
			maxHolders.Load(), saved.Load(), row.Version, row.Lease)
	}
}

func testEventLog(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	var in []spotoken.Event
	for i := range 6 {
		in = append(in, spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: "a", ConnectionID: fmt.Sprint("c", i%2), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	in = append(in, spotoken.Event{Type: spotoken.EventConnectionCreated, AppID: "b", ConnectionID: "c0"})
	if err := h.store.AppendEvents(ctx, in...); err != nil {
		t.Fatal(err)
	}
	all, err := h.store.PendingEvents(ctx, now, 10)
	if err != nil || len(all) != 7 {
		t.Fatalf("PendingEvents = %v, %v", all, err)
	}
	ids := func(es []*spotoken.Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	a := all[:6] // app a's, oldest first
	// 0: pending, 1: delivered, 2: failed, 3: gave up, 4: failed, 5: pending.
	for _, step := range []error{
		h.store.MarkEventDelivered(ctx, a[1].ID, now),
		h.store.MarkEventFailed(ctx, a[2].ID, now.Add(time.Minute), "status 500"),
		h.store.MarkEventFailed(ctx, a[3].ID, spotoken.EventGaveUpAt, "gave up after 1 attempts: status 410"),
		h.store.MarkEventFailed(ctx, a[4].ID, now.Add(time.Hour), "held back behind evt_3"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	list := func(f spotoken.EventFilter) []*spotoken.Event {
		t.Helper()
		es, err := h.store.Events(ctx, f)
		if err != nil {
			t.Fatalf("Events(%+v): %v", f, err)
		}
		return es
	}
	rev := func(es ...*spotoken.Event) []int64 {
		out := ids(es)
		slices.Reverse(out)
		return out
	}
	for _, tt := range []struct {
		name   string
		filter spotoken.EventFilter
		want   []int64
	}{
		{"all of a, newest first", spotoken.EventFilter{AppID: "a"}, rev(a...)},
		{"limit", spotoken.EventFilter{AppID: "a", Limit: 2}, rev(a[4], a[5])},
		{"before", spotoken.EventFilter{AppID: "a", Before: a[4].ID, Limit: 2}, rev(a[2], a[3])},
		{"connection", spotoken.EventFilter{AppID: "a", ConnectionID: "c1"}, rev(a[1], a[3], a[5])},
		{"pending", spotoken.EventFilter{AppID: "a", Status: spotoken.EventPending}, rev(a[0], a[5])},
		{"delivered", spotoken.EventFilter{AppID: "a", Status: spotoken.EventDelivered}, rev(a[1])},
		{"failed", spotoken.EventFilter{AppID: "a", Status: spotoken.EventFailed}, rev(a[2], a[4])},
		{"gave up", spotoken.EventFilter{AppID: "a", Status: spotoken.EventGaveUp}, rev(a[3])},
		{"gave up of c0", spotoken.EventFilter{AppID: "a", Status: spotoken.EventGaveUp, ConnectionID: "c0"}, nil},
		{"app b", spotoken.EventFilter{AppID: "b"}, ids(all[6:])},
		{"unknown app", spotoken.EventFilter{AppID: "zz"}, nil},
	} {
		if d := diff(ids(list(tt.filter)), tt.want); d != "" {
			t.Errorf("%s (-got +want):\n%s", tt.name, d)
		}
	}
	// Status agrees with the store's filter.
	for _, e := range list(spotoken.EventFilter{AppID: "a"}) {
		if got := list(spotoken.EventFilter{AppID: "a", Status: e.Status()}); !slices.Contains(ids(got), e.ID) {
			t.Errorf("event %d has Status %s, but the store's %s filter leaves it out", e.ID, e.Status(), e.Status())
		}
	}
	if _, err := h.store.Events(ctx, spotoken.EventFilter{AppID: "a", Status: "lost"}); !errors.Is(err, spotoken.Errorf(spotoken.EInvalid, "")) {
		t.Errorf("unknown status: %v, want invalid_request", err)
	}

	// Redelivering one event makes it due now, as if new.
	if err := h.store.RedeliverEvent(ctx, "a", a[3].ID); err != nil {
		t.Fatal(err)
	}
	got := list(spotoken.EventFilter{AppID: "a", Status: spotoken.EventPending})
	if d := diff(ids(got), rev(a[0], a[3], a[5])); d != "" {
		t.Errorf("pending after redelivering the given-up event (-got +want):\n%s", d)
	}
	due, _ := h.store.PendingEvents(ctx, now, 10)
	if !slices.Contains(ids(due), a[3].ID) {
		t.Errorf("the redelivered event is not due: %v", ids(due))
	}
	for _, e := range got {
		if e.ID == a[3].ID && (e.Attempts != 0 || e.LastError != "" || !e.NextAttemptAt.IsZero() || !e.DeliveredAt.IsZero()) {
			t.Errorf("redelivered event: %+v", e)
		}
	}
	if err := h.store.RedeliverEvent(ctx, "a", a[1].ID); err != nil {
		t.Errorf("redeliver a delivered event: %v", err)
	}
	wantErr(t, "redeliver another app's event", h.store.RedeliverEvent(ctx, "b", a[0].ID), spotoken.ErrNotFound)
	wantErr(t, "redeliver an unknown event", h.store.RedeliverEvent(ctx, "a", 987654), spotoken.ErrNotFound)

	// In bulk, by status: only that status, only that app.
	if err := h.store.MarkEventFailed(ctx, all[6].ID, now.Add(time.Hour), "status 500"); err != nil {
		t.Fatal(err)
	}
	n, err := h.store.RedeliverEvents(ctx, "a", spotoken.EventFailed)
	if err != nil || n != 2 {
		t.Errorf("RedeliverEvents(a, failed) = %d, %v; want 2", n, err)
	}
	if got := list(spotoken.EventFilter{AppID: "a", Status: spotoken.EventFailed}); len(got) != 0 {
		t.Errorf("failed events left: %v", ids(got))
	}
	if got := list(spotoken.EventFilter{AppID: "b", Status: spotoken.EventFailed}); len(got) != 1 {
		t.Errorf("app b's failed event was redelivered by a's call: %v", ids(got))
	}
	if n, err := h.store.RedeliverEvents(ctx, "a", spotoken.EventGaveUp); err != nil || n != 0 {
		t.Errorf("RedeliverEvents(a, gave_up) with none = %d, %v", n, err)
	}
	for _, s := range []spotoken.EventStatus{spotoken.EventPending, spotoken.EventDelivered, "x"} {
		if _, err := h.store.RedeliverEvents(ctx, "a", s); !errors.Is(err, spotoken.Errorf(spotoken.EInvalid, "")) {
			t.Errorf("RedeliverEvents(%s): %v, want invalid_request", s, err)
		}
	}
}

func testFindConnections(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	for _, c := range []struct {
		app, id, user string
		state         spotoken.State
	}{
		{"a", "c1", "alice", spotoken.StateActive},
		{"a", "c2", "bob", spotoken.StateNeedsReauth},
		{"a", "c3", "alice", spotoken.StateActive},
		{"b", "c1", "carol", spotoken.StateActive},
		{"b", "x9", "alice", spotoken.StateNeedsReauth},
	} {
		h.newConn(t, c.app, c.id, func(conn *spotoken.Connection) {
			conn.SpotifyUserID, conn.State = c.user, c.state
		})
	}
	keys := func(cs []*spotoken.Connection) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Key().String())
			if c.Token.AccessToken != "" || c.Token.RefreshToken != "" {
				t.Errorf("FindConnections opened the tokens of %s", c.Key())
			}
			if c.Token.Expiry.IsZero() {
				t.Errorf("FindConnections lost the expiry of %s", c.Key())
			}
		}
		return out
	}
	for _, tt := range []struct {
		name string
		q    spotoken.ConnectionQuery
		want []string
	}{
		{"all", spotoken.ConnectionQuery{}, []string{"a/c1", "a/c2", "a/c3", "b/c1", "b/x9"}},
		{"app", spotoken.ConnectionQuery{AppID: "b"}, []string{"b/c1", "b/x9"}},
		{"id across apps", spotoken.ConnectionQuery{ID: "c1"}, []string{"a/c1", "b/c1"}},
		{"spotify user", spotoken.ConnectionQuery{SpotifyUserID: "alice"}, []string{"a/c1", "a/c3", "b/x9"}},
		{"user and state", spotoken.ConnectionQuery{SpotifyUserID: "alice", State: spotoken.StateNeedsReauth}, []string{"b/x9"}},
		{"state in app", spotoken.ConnectionQuery{AppID: "a", State: spotoken.StateActive}, []string{"a/c1", "a/c3"}},
		{"page 1", spotoken.ConnectionQuery{Limit: 2}, []string{"a/c1", "a/c2"}},
		{"page 2", spotoken.ConnectionQuery{Limit: 2, After: spotoken.ConnectionKey{AppID: "a", ID: "c2"}}, []string{"a/c3", "b/c1"}},
		{"page 3", spotoken.ConnectionQuery{Limit: 2, After: spotoken.ConnectionKey{AppID: "b", ID: "c1"}}, []string{"b/x9"}},
		{"nobody", spotoken.ConnectionQuery{SpotifyUserID: "mallory"}, nil},
	} {
		got, err := h.store.FindConnections(ctx, tt.q)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if d := diff(keys(got), tt.want); d != "" {
			t.Errorf("%s (-got +want):\n%s", tt.name, d)
		}
	}
	got, _ := h.store.FindConnections(ctx, spotoken.ConnectionQuery{AppID: "a", ID: "c2"})
	full := h.get(t, spotoken.ConnectionKey{AppID: "a", ID: "c2"})
	full.Token = spotoken.Token{Expiry: full.Token.Expiry}
	if len(got) != 1 || diff(got[0], full) != "" {
		t.Errorf("FindConnections a/c2 (-got +want):\n%s", diff(got, []*spotoken.Connection{full}))
	}
}

// testOperatorReseal: keys rotate re-seals the previous secrets and app
// tokens too, and none of them is stored in plaintext.
func testOperatorReseal(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.stage(t, "a", "new")
	if _, err := h.store.AcquireAppTokenLease(ctx, "a", "A", time.Minute); err != nil {
		t.Fatal(err)
	}
	tok := &spotoken.AppToken{AppID: "a", AccessToken: marker("app-token", "a"), Expiry: h.clock.Now().Add(time.Hour)}
	if err := h.store.SaveAppToken(ctx, "A", tok); err != nil {
		t.Fatal(err)
	}

	raw := h.backend.Dump(t)
	if !bytes.Contains(raw, []byte("client-a")) {
		t.Fatal("the dump lacks the non-secret client id: Dump does not read the data")
	}
	for _, s := range []spotoken.Secret{marker("client-secret", "a"), marker("client-secret-new", "a"),
		marker("webhook-secret", "a"), marker("webhook-secret-new", "a"), tok.AccessToken} {
		if bytes.Contains(raw, []byte(s.Reveal())) {
			t.Errorf("%s is in the database in plaintext", s.Reveal())
		}
	}

	s12 := h.open(t, h.ring12)
	n, err := s12.Reseal(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Four app secrets and one app token were sealed under v1.
	if n != 5 {
		t.Errorf("Reseal re-sealed %d secrets, want 5", n)
	}
	s2 := h.open(t, h.ring2)
	a, err := s2.App(ctx, "a")
	if err != nil || a.PreviousClientSecret != marker("client-secret", "a") || a.PreviousWebhookSecret != marker("webhook-secret", "a") {
		t.Errorf("app under a v2-only ring: %+v, %v", a, err)
	}
	if row, err := s2.AppToken(ctx, "a"); err != nil || row.AccessToken != tok.AccessToken {
		t.Errorf("app token under a v2-only ring: %+v, %v", row, err)
	}
}
