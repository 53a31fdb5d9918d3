package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/server"
)

var operator = admin.Actor{Kind: admin.ActorCLI, Name: "test"}

// adminService is an admin service on the env's store and clock.
func (e *hookEnv) adminService() *admin.Service {
	e.t.Helper()
	svc, err := admin.New(admin.Config{Store: e.store, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// verifies reports whether d verifies under secret, as a receiver holding
// it would check it.
func verifies(d hookDelivery, secret spotoken.Secret, now time.Time) bool {
	h := http.Header{}
	h.Set("webhook-id", d.ID)
	h.Set("webhook-timestamp", d.Timestamp)
	h.Set("webhook-signature", d.Signature)
	return server.VerifyWebhook(secret, h, []byte(d.Body), now, 0) == nil
}

// TestWebhookSecretRotation: after a rotation, each delivery carries two
// signatures, one under each secret, so receivers still holding the old
// secret and those given the new one both verify it; once the old secret is
// retired only the new one's signature is sent.
func TestWebhookSecretRotation(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	old := e.app("a", rc.URL(), true)
	rc.setSecret(old)
	svc := e.adminService()
	w := e.webhooks(nil)

	e.emit("a", "c1")
	e.pass(w, server.WebhookPass{Delivered: 1})
	_, next, err := svc.RotateWebhookSecret(context.Background(), operator, "a")
	if err != nil || next == "" || next == old {
		t.Fatalf("rotate: %v", err)
	}
	e.emit("a", "c2")
	e.pass(w, server.WebhookPass{Delivered: 1})
	if _, err := svc.RetireWebhookSecret(context.Background(), operator, "a"); err != nil {
		t.Fatal(err)
	}
	e.emit("a", "c3")
	e.pass(w, server.WebhookPass{Delivered: 1})

	got := rc.deliveries()
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	now := e.clock.Now()
	for i, tt := range []struct {
		sigs          int
		byOld, byNext bool
	}{
		{1, true, false}, // before the rotation
		{2, true, true},  // during it: both
		{1, false, true}, // after the retirement
	} {
		d := got[i]
		if n := len(strings.Fields(d.Signature)); n != tt.sigs {
			t.Errorf("delivery %d: %d signatures, want %d", i, n, tt.sigs)
		}
		if verifies(d, old, now) != tt.byOld || verifies(d, next, now) != tt.byNext {
			t.Errorf("delivery %d: verifies under the old secret %v (want %v), under the new %v (want %v)",
				i, verifies(d, old, now), tt.byOld, verifies(d, next, now), tt.byNext)
		}
	}
	if strings.Contains(e.logs.String(), old.Reveal()) || strings.Contains(e.logs.String(), next.Reveal()) {
		t.Error("a webhook secret is in the log")
	}
}

// TestWebhookURLChangeAndRedelivery is issue 15's acceptance of the webhook
// life cycle: an event that failed until it was given up stays given up
// when the URL changes, the next event goes to the new URL, and the given-up
// event, redelivered by an operator, reaches the new URL and verifies there.
func TestWebhookURLChangeAndRedelivery(t *testing.T) {
	e := newHookEnv(t)
	broken := newHookReceiver(t, e.clock)
	broken.setRespond(func(int, http.ResponseWriter, *http.Request) int { return http.StatusInternalServerError })
	secret := e.app("a", broken.URL(), true)
	broken.setSecret(secret)
	svc := e.adminService()
	w := e.webhooks(func(w *server.Webhooks) { w.MaxAttempts = 2 })

	lost := e.emit("a", "c1")[0]
	e.pass(w, server.WebhookPass{Failed: 1})
	e.clock.Advance(time.Hour)
	e.pass(w, server.WebhookPass{GaveUp: 1})
	if st := e.event(lost).Status(); st != spotoken.EventGaveUp {
		t.Fatalf("event %d is %s, want gave_up", lost, st)
	}

	fixed := newHookReceiver(t, e.clock)
	fixed.setSecret(secret)
	url := fixed.URL()
	up, err := svc.UpdateApp(context.Background(), operator, "a", admin.AppPatch{WebhookURL: &url})
	if err != nil {
		t.Fatal(err)
	}
	if up.Redelivered != 0 || up.WebhookSecret != "" {
		t.Errorf("URL change: %d events redelivered, new secret %v; want neither (the given-up event waits for an operator)", up.Redelivered, up.WebhookSecret != "")
	}
	next := e.emit("a", "c2")[0]
	e.pass(w, server.WebhookPass{Delivered: 1})
	if ids := fixed.ids(); len(ids) != 1 || ids[0] != evtIDs(next)[0] {
		t.Fatalf("the new URL got %v, want the next event %v", ids, evtIDs(next))
	}

	events, err := svc.Events(context.Background(), spotoken.EventFilter{AppID: "a", Status: spotoken.EventGaveUp})
	if err != nil || len(events) != 1 || events[0].ID != lost {
		t.Fatalf("given-up events: %v, %v", events, err)
	}
	if err := svc.RedeliverEvent(context.Background(), operator, "a", lost); err != nil {
		t.Fatal(err)
	}
	e.pass(w, server.WebhookPass{Delivered: 1})
	got := fixed.deliveries()
	if len(got) != 2 || got[1].ID != evtIDs(lost)[0] || got[1].Verified != nil || !strings.Contains(got[1].Body, `"c1"`) {
		t.Fatalf("after the redelivery the new URL got %v", fixed.ids())
	}
	if delivered, _ := svc.Events(context.Background(), spotoken.EventFilter{AppID: "a", Status: spotoken.EventDelivered}); len(delivered) != 2 {
		t.Errorf("%d delivered events, want 2 (the next one and the redelivered one)", len(delivered))
	}
	if n := len(broken.deliveries()); n != 2 {
		t.Errorf("the old URL got %d deliveries, want the 2 attempts before the change", n)
	}
}

// TestWebhookSecretGiven: an app with a webhook URL but no secret gets
// nothing; once an operator gives it one, its failed events are due at
// once and delivered, signed.
func TestWebhookSecretGiven(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	e.app("a", rc.URL(), false)
	w := e.webhooks(nil)
	id := e.emit("a", "c1")[0]
	e.pass(w, server.WebhookPass{Failed: 1})
	if ev := e.event(id); ev.LastError != "app has no webhook secret" || len(rc.deliveries()) != 0 {
		t.Fatalf("without a secret: %+v, %d deliveries", ev, len(rc.deliveries()))
	}
	up, err := e.adminService().UpdateApp(context.Background(), operator, "a", admin.AppPatch{RotateWebhookSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	if up.WebhookSecret == "" || up.Redelivered != 1 || up.App.PreviousWebhookSecret != "" {
		t.Fatalf("secret given: %+v", up)
	}
	rc.setSecret(up.WebhookSecret)
	e.pass(w, server.WebhookPass{Delivered: 1}) // no clock advance: due at once
	if d := rc.deliveries(); len(d) != 1 || d[0].Verified != nil {
		t.Errorf("deliveries: %+v", d)
	}
}

// TestRedeliverUnknown: redelivering an event of another app, or one that
// does not exist, is not_found and changes nothing.
func TestRedeliverUnknown(t *testing.T) {
	e := newHookEnv(t)
	e.app("a", "", false)
	e.app("b", "", false)
	id := e.emit("a", "c1")[0]
	svc := e.adminService()
	for _, tt := range []struct {
		app string
		id  int64
	}{{"b", id}, {"a", id + 100}} {
		if err := svc.RedeliverEvent(context.Background(), operator, tt.app, tt.id); !errors.Is(err, spotoken.ErrNotFound) {
			t.Errorf("redeliver %s/%d: %v, want not_found", tt.app, tt.id, err)
		}
	}
}
