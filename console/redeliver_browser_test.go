package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/server"
)

// receiver is an app's webhook endpoint: it verifies every delivery's
// signature with the app's secret, and refuses everything while down.
type receiver struct {
	mu       sync.Mutex
	secret   spotoken.Secret
	now      func() time.Time
	down     bool
	verified []string // the webhook-ids of deliveries whose signature held, accepted
	refused  int
	bad      int // deliveries whose signature did not hold
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := server.VerifyWebhook(rc.secret, r.Header, body, rc.now(), 0); err != nil {
		rc.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.down {
		rc.refused++
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	rc.verified = append(rc.verified, r.Header.Get("webhook-id")+" "+string(body))
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.verified...)
}

// TestBrowserRedeliver: an event the deliverer gave up on (the receiver was
// down through its one attempt) is redelivered from the console, with
// Chromium clicking the button, and the receiver verifies its signature;
// then the rest, with "Redeliver all given up".
func TestBrowserRedeliver(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{})
	rc := &receiver{now: h.emu.Now, down: true}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	url := hook.URL + "/hooks"
	up, err := h.admin.UpdateApp(ctx, admin.Actor{Kind: admin.ActorCLI, Name: "test"}, appID, admin.AppPatch{WebhookURL: &url})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = up.WebhookSecret
	h.connect("u1")
	h.connect("u2")
	hooks := &server.Webhooks{Store: h.store, Now: h.emu.Now, MaxAttempts: 1, Jitter: func() float64 { return 0 }}
	pass, err := hooks.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pass.GaveUp != 1 || pass.Deferred != 1 {
		t.Fatalf("the first pass: %+v, want the first event given up, the second held back behind it", pass)
	}
	h.emu.Advance(time.Minute)     // past the held-back event's wait
	pass, err = hooks.RunOnce(ctx) // the second, now first in line, fails its one attempt too
	if err != nil || pass.GaveUp != 1 {
		t.Fatalf("the second pass: %+v %v, want the second event given up", pass, err)
	}
	gaveUp, err := h.store.Events(ctx, spotoken.EventFilter{AppID: appID, Status: spotoken.EventGaveUp})
	if err != nil || len(gaveUp) != 2 {
		t.Fatalf("given-up events: %v %v", gaveUp, err)
	}
	first := "evt_" + strconv.FormatInt(gaveUp[1].ID, 10) // oldest: u1's connection.created
	rc.mu.Lock()
	rc.down = false
	rc.mu.Unlock()

	b.do("sign in", chromedp.Navigate(h.ts.URL+"/console/login"), chromedp.SendKeys(chromedp.ID("credential"), h.adminKey),
		chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.ID("apps")))
	if row := b.text(`tr[data-app="demo"]`); !strings.Contains(row, "2 given up") {
		t.Errorf("the apps list does not show demo's 2 given-up deliveries: %q", row)
	}
	b.navigate("open the given-up deliveries", "#deliveries", chromedp.Click(chromedp.CSS(`tr[data-app="demo"] a.bad`)))
	if got := b.location(); !strings.HasSuffix(got, "/console/apps/demo/deliveries?status=gave_up") {
		t.Errorf("the link went to %s", got)
	}
	b.checkWidths("deliveries-gave-up")
	b.navigate("redeliver "+first, "#notice",
		chromedp.Click(chromedp.CSS(`tr[data-event="`+first+`"] button`)),
	)
	if got := b.text("#notice"); !strings.Contains(got, first+" is due again") {
		t.Errorf("after Redeliver the page says %q", got)
	}
	if !strings.HasSuffix(b.location(), "/console/apps/demo/deliveries?status=gave_up") {
		t.Errorf("after Redeliver the browser is at %s, not back on the list it was on", b.location())
	}
	if b.has(`tr[data-event="` + first + `"]`) {
		t.Error("the redelivered event is still listed as given up")
	}
	if _, err := hooks.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	if len(got) != 1 || !strings.HasPrefix(got[0], first+" ") || !strings.Contains(got[0], `"type":"connection.created"`) ||
		!strings.Contains(got[0], `"connection_id":"u1"`) {
		t.Fatalf("the receiver verified %v, want %s (u1's connection.created) alone", got, first)
	}

	// The rest at once.
	b.navigate("redeliver all given up", "#notice", chromedp.Navigate(h.ts.URL+"/console/apps/demo/deliveries"),
		chromedp.WaitVisible(chromedp.ID("redeliver-gave-up")), chromedp.Click(chromedp.ID("redeliver-gave-up")))
	if got := b.text("#notice"); !strings.Contains(got, "1 given up event(s) are due again") {
		t.Errorf("after Redeliver all the page says %q", got)
	}
	if _, err := hooks.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(); len(got) != 2 || !strings.Contains(got[1], `"connection_id":"u2"`) {
		t.Errorf("the receiver verified %v, want u2's event second", got)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.bad != 0 {
		t.Errorf("%d deliveries had a signature that did not verify", rc.bad)
	}
	delivered, err := h.store.Events(ctx, spotoken.EventFilter{AppID: appID, Status: spotoken.EventDelivered})
	if err != nil || len(delivered) != 2 {
		t.Errorf("delivered events: %d %v, want 2", len(delivered), err)
	}
	b.navigate("the connection's timeline shows the delivery", "#timeline", chromedp.Navigate(h.ts.URL+"/console/apps/demo/connections/u1"))
	if st := b.text(`li[data-event="` + first + `"] .ev-delivery`); !strings.Contains(st, "delivered at") {
		t.Errorf("u1's timeline says of %s: %q, want delivered", first, st)
	}
}
