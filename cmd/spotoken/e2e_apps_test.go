package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// TestE2EWebhookLifecycle is issue 15's acceptance of the webhook life
// cycle against the real binary: an event the receiver refused is given up
// (one attempt), 'apps update --webhook-url' moves the webhook, the next
// event reaches the new URL, and 'webhooks redeliver' sends the given-up
// event there, where it verifies. Then the admin API is driven from
// outside with an admin credential made by 'admins create', which API keys
// cannot stand in for, and app tokens are refused to the public app.
func TestE2EWebhookLifecycle(t *testing.T) {
	e := e2eStart(t, "--webhook-attempts", "1")
	e.hooks.setSecret(spotoken.NewWebhookSecret()) // the receiver refuses every delivery: a wrong secret
	e.connect(e.appKey, "u1", "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var gaveUp []server.EventView
		if err := json.Unmarshal([]byte(e.cli("webhooks", "list", "--app", "e2e", "--status", "gave_up", "--json")), &gaveUp); err != nil {
			t.Fatal(err)
		}
		if len(gaveUp) == 1 && gaveUp[0].ConnectionID == "u1" && gaveUp[0].Type == spotoken.EventConnectionCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused event did not give up within 30s: %+v", gaveUp)
		}
		time.Sleep(100 * time.Millisecond)
	}

	good := newE2EHooks(t)
	good.setEmulator(e.emu)
	good.setSecret(spotoken.Secret(e.whsec))
	out := e.cli("apps", "update", "e2e", "--webhook-url", good.srv.URL+"/hooks")
	if !strings.Contains(out, "Updated app e2e: webhook_url.") || strings.Contains(out, "whsec_") {
		t.Errorf("apps update --webhook-url:\n%s", out)
	}
	e.connect(e.appKey, "u2", "")
	if d := good.wait(string(spotoken.EventConnectionCreated)); d.Data["connection_id"] != "u2" {
		t.Fatalf("the new URL's first event is of %v, want the next one (u2)", d.Data["connection_id"])
	}
	e.cli("webhooks", "redeliver", "--app", "e2e", "--status", "gave_up")
	deadline = time.Now().Add(30 * time.Second)
	for redelivered := false; !redelivered; {
		for _, d := range good.deliveries() {
			redelivered = redelivered || (d.Err == nil && d.Data["connection_id"] == "u1" && d.Type == string(spotoken.EventConnectionCreated))
		}
		if !redelivered && time.Now().After(deadline) {
			t.Fatalf("the given-up event was not redelivered and verified within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	adminKey, _, _ := strings.Cut(e.cli("admins", "create", "ops"), "\n")
	var apps server.AppList
	r := e2eDo(t, "GET", e.base+"/admin/v1/apps", adminKey, nil)
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &apps) != nil || len(apps.Apps) != 2 {
		t.Errorf("GET /admin/v1/apps with the admin key: %d %s", r.Status, r.Body)
	}
	var changed server.AppChange
	r = e2eDo(t, "PATCH", e.base+"/admin/v1/apps/e2e", adminKey, map[string]any{"return_to_origins": []string{"https://app.example", "https://other.example"}})
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &changed) != nil || len(changed.App.ReturnToOrigins) != 2 {
		t.Errorf("PATCH /admin/v1/apps/e2e: %d %s", r.Status, r.Body)
	}
	if r := e2eDo(t, "GET", e.base+"/admin/v1/apps", e.appKey, nil); r.Status != http.StatusUnauthorized {
		t.Errorf("the admin API with an API key: %d %s", r.Status, r.Body)
	}
	if r := e2eDo(t, "GET", e.base+"/v1/connections", adminKey, nil); r.Status != http.StatusUnauthorized {
		t.Errorf("the app API with an admin key: %d %s", r.Status, r.Body)
	}
	var events server.EventList
	r = e2eDo(t, "GET", e.base+"/admin/v1/apps/e2e/events?status=delivered", adminKey, nil)
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &events) != nil || len(events.Events) < 2 {
		t.Errorf("delivered events over the admin API: %d %s", r.Status, r.Body)
	}
	if r := e2eDo(t, "POST", e.base+"/v1/app-token", e.appKey, nil); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "unauthorized_client") {
		t.Errorf("an app token for a public app: %d %s", r.Status, r.Body)
	}

	secrets := map[string]string{"the admin key": adminKey, "the API key": e.appKey, "the webhook secret": e.whsec}
	e.stopAndSearch(t, secrets, []string{`"action":"app.update"`, `"route":"GET /admin/v1/apps"`}, []string{"spotoken-demo"})
}
