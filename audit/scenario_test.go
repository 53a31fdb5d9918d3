package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/server"
)

var reuseDetection = emulator.Rotation{Mode: emulator.RotateReuseDetection}

// TestNewNetwork: a key used from a /24 it has not used before, after its
// learning period, fires once; more addresses of that /24 do not; networks
// seen while learning never do.
func TestNewNetwork(t *testing.T) {
	w := newWorld(t, emulator.Rotation{}, audit.Detectors{})
	key, keyID := w.addApp("app")
	w.connect(key, "c1", "u1")
	// Learning (24h): two networks.
	w.vend(key, "c1", "192.0.2.10")
	w.vend(key, "c1", "2001:db8:1:2::10")
	w.advance(30 * time.Minute)
	w.vend(key, "c1", "192.0.2.77")
	w.advance(25 * time.Hour)
	w.vend(key, "c1", "192.0.2.200")      // known /24
	w.vend(key, "c1", "2001:db8:1:ff::1") // known /48
	w.flush()
	w.wantAnomalies(nil)

	w.vend(key, "c1", "198.51.100.7") // new /24: fires
	w.flush()
	w.vend(key, "c1", "198.51.100.8") // the same /24 again
	w.vend(key, "c1", "198.51.100.9")
	w.advance(time.Hour)
	w.vend(key, "c1", "198.51.100.10")
	w.flush()
	w.wantAnomalies(map[string]int64{audit.DetectNewNetwork: 1})
	ev := w.alertEvents()[spotoken.EventAlertNewNetwork]
	if len(ev) != 1 {
		t.Fatalf("%d new_network events", len(ev))
	}
	var data map[string]any
	json.Unmarshal(ev[0].Data, &data)
	if data["api_key_id"] != keyID || data["network"] != "198.51.100.0/24" || data["client_ip"] != "198.51.100.7" || ev[0].AppID != "app" {
		t.Errorf("new_network event: app %s, data %v", ev[0].AppID, data)
	}
}

// TestUsageSpike: 50 times a connection's steady rate fires once, however
// long the burst lasts; the other connections stay quiet.
func TestUsageSpike(t *testing.T) {
	w := newWorld(t, emulator.Rotation{}, audit.Detectors{})
	key, _ := w.addApp("app")
	w.connect(key, "steady", "u1")
	w.connect(key, "other", "u2")
	// Two hours of one vend a minute (5 per 5-minute window) on each.
	for range 120 {
		w.vend(key, "steady", "192.0.2.1")
		w.vend(key, "other", "192.0.2.1")
		w.advance(time.Minute)
	}
	w.wantAnomalies(nil)
	// 50×: 250 vends a window, for three windows.
	for range 15 {
		for range 50 {
			w.vend(key, "steady", "192.0.2.1")
		}
		w.vend(key, "other", "192.0.2.1")
		w.advance(time.Minute)
	}
	w.wantAnomalies(map[string]int64{audit.DetectUsageSpike: 1})
	ev := w.alertEvents()[spotoken.EventAlertUsageSpike]
	if len(ev) != 1 || ev[0].ConnectionID != "steady" {
		t.Fatalf("usage_spike events: %v", ev)
	}
}

// TestReauthSurge: 30% of an app's 60 connections revoked by their users
// within an hour fires once, and the reuse suspicions it causes under
// rotation are folded into it; another app is not affected.
func TestReauthSurge(t *testing.T) {
	w := newWorld(t, reuseDetection, audit.Detectors{})
	key, _ := w.addApp("app")
	other, _ := w.addApp("other")
	for i := range 60 {
		w.connect(key, fmt.Sprint("c", i), fmt.Sprint("u", i))
	}
	w.connect(other, "o1", "ou1")
	w.advance(time.Hour) // every token refreshed and rotated
	w.advance(time.Hour)
	w.wantAnomalies(nil)
	for i := range 18 {
		if err := w.emu.RevokeGrant(fmt.Sprint("u", i), clientID); err != nil {
			t.Fatal(err)
		}
		if i%6 == 5 {
			w.advance(10 * time.Minute)
		}
	}
	w.advance(time.Hour) // the refreshes find out
	for range 3 {
		w.advance(10 * time.Minute)
	}
	n, _ := w.store.CountConnections(ctx)
	t.Logf("connections: %+v", n)
	w.wantAnomalies(map[string]int64{audit.DetectReauthSurge: 1})
	ev := w.alertEvents()[spotoken.EventAlertReauthSurge]
	if len(ev) != 1 || ev[0].AppID != "app" {
		t.Fatalf("reauth_surge events: %v", ev)
	}
	// The trail holds the 18 needs_reauth records, each with its reason.
	recs, err := w.trail.Records(ctx, spotoken.AuditFilter{AppID: "app", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	reauth := 0
	for _, r := range recs {
		if r.Action == spotoken.AuditNeedsReauth && r.Outcome == "revoked" && r.ActorType == spotoken.ActorSystem {
			reauth++
		}
	}
	if reauth != 18 {
		t.Errorf("%d needs_reauth records, want 18", reauth)
	}
}

// TestRefreshTokenReuse: a rotated-out refresh token used behind spotoken's
// back (the emulator revokes the grant, as RFC 9700 asks) fires once, for
// that connection, when spotoken's own refresh is then refused.
func TestRefreshTokenReuse(t *testing.T) {
	w := newWorld(t, reuseDetection, audit.Detectors{})
	key, _ := w.addApp("app")
	for i := range 5 {
		w.connect(key, fmt.Sprint("c", i), fmt.Sprint("u", i))
	}
	c, err := w.store.Connection(ctx, spotoken.ConnectionKey{AppID: "app", ID: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	stolen := c.Token.RefreshToken // the first refresh rotates it out
	w.advance(time.Hour)
	w.advance(time.Hour)
	w.wantAnomalies(nil)

	// Someone else redeems the stolen, rotated-out token.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {stolen.Reveal()}, "client_id": {clientID}}
	res, err := http.PostForm(w.emuSrv.URL+"/api/token", form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("the stolen token: %d, want 400 (reuse detected)", res.StatusCode)
	}
	w.advance(time.Hour) // spotoken's refresh of c2 is refused
	w.wantAnomalies(nil) // held for ReuseHold, in case a surge explains it
	w.advance(10 * time.Minute)
	w.advance(time.Hour)
	w.wantAnomalies(map[string]int64{audit.DetectRefreshReuse: 1})
	ev := w.alertEvents()[spotoken.EventAlertRefreshReuse]
	if len(ev) != 1 || ev[0].ConnectionID != "c2" {
		t.Fatalf("refresh_token_reuse events: %v", ev)
	}
}

// TestNoReuseAlertWithoutRotation: under rotation never (Spotify's
// behaviour today) a refused refresh token is a revocation, never a reuse
// suspicion: reuse is invisible there, and docs/audit.md says so.
func TestNoReuseAlertWithoutRotation(t *testing.T) {
	w := newWorld(t, emulator.Rotation{}, audit.Detectors{})
	key, _ := w.addApp("app")
	w.connect(key, "c1", "u1")
	w.advance(time.Hour)
	if err := w.emu.RevokeGrant("u1", clientID); err != nil {
		t.Fatal(err)
	}
	w.advance(time.Hour)
	w.advance(time.Hour)
	w.wantAnomalies(nil)
}

// TestAuthLimit: 200 bad keys from one address put it under the limit once
// (401 until the limit, then 429 with Retry-After, without the store being
// asked), while a client at another address keeps working; the limit ends
// after its block.
func TestAuthLimit(t *testing.T) {
	w := newWorld(t, emulator.Rotation{}, audit.Detectors{})
	key, _ := w.addApp("app")
	w.connect(key, "c1", "u1")
	var s401, s429 int
	for i := range 200 {
		r := w.call("POST", "/v1/connections/c1/token", "sk_"+strings.Repeat(string(rune('a'+i%26)), 20)+strconv.Itoa(i), "203.0.113.9", "")
		switch r.Status {
		case http.StatusUnauthorized:
			s401++
		case http.StatusTooManyRequests:
			s429++
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 900 {
				t.Fatalf("429 with Retry-After %q", r.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("bad key %d: %d %s", i, r.Status, r.Body)
		}
		if i%10 == 0 {
			w.vend(key, "c1", "198.51.100.20") // the well-behaved client
		}
	}
	if s401 != 20 || s429 != 180 {
		t.Errorf("bad keys: %d × 401, %d × 429; want 20 and 180", s401, s429)
	}
	// The good key from the limited address is refused too (no oracle).
	if r := w.call("POST", "/v1/connections/c1/token", key, "203.0.113.9", ""); r.Status != http.StatusTooManyRequests {
		t.Errorf("the limited address with a good key: %d", r.Status)
	}
	w.flush()
	w.wantAnomalies(map[string]int64{audit.DetectAuthLimited: 1})
	st := w.trail.Stats()
	if st.AuthFailures != 20 || st.AuthLimited != 181 || st.LimitedAddresses != 1 {
		t.Errorf("stats: %+v", st)
	}
	recs, err := w.trail.Records(ctx, spotoken.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	failed, limited := 0, 0
	for _, r := range recs {
		switch r.Action {
		case spotoken.AuditAuthFailed:
			failed++
			if r.ClientIP != "203.0.113.9" || r.Outcome != server.EInvalidToken || r.Status != 401 {
				t.Errorf("auth.failed record: %+v", r)
			}
		case spotoken.AuditAuthLimited:
			limited++
		}
	}
	if failed != 20 || limited != 1 {
		t.Errorf("%d auth.failed and %d auth.limited records, want 20 and 1", failed, limited)
	}
	w.emu.Advance(16 * time.Minute)
	if r := w.call("POST", "/v1/connections/c1/token", key, "203.0.113.9", ""); r.Status != 200 {
		t.Errorf("after the block: %d %s", r.Status, r.Body)
	}
}

// TestTrailOfASession: a connection's trail shows every vend and proxied
// call of a session, with the right key and address and the vended token's
// fingerprint, through the API (an app's key sees its app only); and none
// of the session's secrets is in the database files or the logs.
func TestTrailOfASession(t *testing.T) {
	w := newWorld(t, reuseDetection, audit.Detectors{})
	keyA, keyAID := w.addApp("app")
	keyB, keyBID := w.addKey("app", "second service")
	otherKey, _ := w.addApp("other")
	link := w.connect(keyA, "c1", "u1")
	w.connect(otherKey, "c1", "u2") // same id, another app

	type call struct {
		action     spotoken.AuditAction
		keyID, ip  string
		token      string
		route      string
		upstream   int
		status     int
		connection string
	}
	var want []call
	tokens := map[string]bool{}
	for i := range 3 {
		ip := ipN("192.0.2", 10+i)
		tok := w.vend(keyA, "c1", ip)
		tokens[tok] = true
		want = append(want, call{spotoken.AuditTokenVend, keyAID, ip, tok, "/v1/connections/{id}/token", 0, 200, "c1"})
	}
	for i, p := range []string{"/v1/me", "/v1/me/top/artists", "/v1/me/playlists"} {
		ip := ipN("198.51.100", 20+i)
		r := w.call("GET", "/v1/proxy/c1"+p, keyB, ip, "")
		route := map[string]string{"/v1/me": "/v1/me", "/v1/me/top/artists": "/v1/me/top/{type}", "/v1/me/playlists": "/v1/me/playlists"}[p]
		upstream := r.Status
		if p == "/v1/me/top/artists" { // spotoken answers insufficient_scope itself
			upstream = 0
		}
		want = append(want, call{spotoken.AuditProxyCall, keyBID, ip, "", route, upstream, r.Status, "c1"})
	}
	before, err := w.store.Connection(ctx, spotoken.ConnectionKey{AppID: "app", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	w.advance(time.Hour) // a refresh: rotates the refresh token
	tok := w.vend(keyB, "c1", "192.0.2.99")
	tokens[tok] = true
	want = append(want, call{spotoken.AuditTokenVend, keyBID, "192.0.2.99", tok, "/v1/connections/{id}/token", 0, 200, "c1"})
	w.flush()

	r := w.call("GET", "/v1/audit?connection_id=c1&limit=1000", keyA, "192.0.2.10", "")
	var list server.AuditList
	if r.Status != 200 || json.Unmarshal(r.Body, &list) != nil {
		t.Fatalf("GET /v1/audit: %d %s", r.Status, r.Body)
	}
	var got []server.AuditRecordView
	connects := 0
	for _, rec := range list.Records {
		if rec.AppID != "app" || rec.ConnectionID != "c1" {
			t.Errorf("a record of another app or connection: %+v", rec)
		}
		switch rec.Action {
		case string(spotoken.AuditTokenVend), string(spotoken.AuditProxyCall):
			got = append(got, rec)
		case string(spotoken.AuditConnect):
			connects++
			if rec.Actor.Type != spotoken.ActorUser || rec.Actor.ID != "u1" {
				t.Errorf("connect record: %+v", rec)
			}
		}
	}
	if connects != 1 {
		t.Errorf("%d connect records, want 1", connects)
	}
	if len(got) != len(want) {
		t.Fatalf("%d vend and proxy records, want %d: %s", len(got), len(want), r.Body)
	}
	for i, g := range got {
		wt := want[i]
		fp := ""
		if wt.token != "" {
			fp = w.fp.Fingerprint(spotoken.Secret(wt.token))
		}
		if g.Action != string(wt.action) || g.Actor.Type != spotoken.ActorAPIKey || g.Actor.ID != wt.keyID || g.ClientIP != wt.ip ||
			g.Route != wt.route || g.Status != wt.status || g.UpstreamStatus != wt.upstream || g.Fingerprint != fp ||
			g.UserAgent != "svc-test/1.0" || g.Version != spotoken.AuditVersion || g.RequestID == "" {
			t.Errorf("record %d:\n got %+v\nwant %+v (fingerprint %s)", i, g, wt, fp)
		}
	}
	// The other app's key sees none of app's records, though its own
	// connection is also called c1.
	r = w.call("GET", "/v1/audit?connection_id=c1", otherKey, "192.0.2.10", "")
	json.Unmarshal(r.Body, &list)
	for _, rec := range list.Records {
		if rec.AppID != "other" {
			t.Errorf("app other's key sees %+v", rec)
		}
	}
	// Paging with the cursor gives the same records.
	var paged []server.AuditRecordView
	cursor := ""
	for {
		r := w.call("GET", "/v1/audit?connection_id=c1&limit=2&cursor="+cursor, keyA, "192.0.2.10", "")
		var page server.AuditList
		if r.Status != 200 || json.Unmarshal(r.Body, &page) != nil {
			t.Fatalf("page: %d %s", r.Status, r.Body)
		}
		paged = append(paged, page.Records...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(paged) < len(got) {
		t.Errorf("paging gave %d records, want at least %d", len(paged), len(got))
	}
	for _, bad := range []string{"since=yesterday", "limit=0", "cursor=x", "connection_id=a/b", "color=red", "limit=1&limit=2"} {
		if r := w.call("GET", "/v1/audit?"+bad, keyA, "", ""); r.Status != 400 || !bytes.Contains(r.Body, []byte("invalid_request")) {
			t.Errorf("GET /v1/audit?%s: %d %s", bad, r.Status, r.Body)
		}
	}

	// None of the secrets is in the database files or the logs.
	secrets := map[string]string{"API key A": keyA, "API key B": keyB, "the other app's key": otherKey,
		"the connect link": strings.TrimPrefix(link, w.ts.URL+"/connect/")}
	i := 0
	for tok := range tokens {
		secrets[fmt.Sprint("vended access token ", i)] = tok
		i++
	}
	secrets["the rotated-out refresh token"] = before.Token.RefreshToken.Reveal()
	for _, k := range []spotoken.ConnectionKey{{AppID: "app", ID: "c1"}, {AppID: "other", ID: "c1"}} {
		c, err := w.store.Connection(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		secrets["refresh token of "+k.String()] = c.Token.RefreshToken.Reveal()
		secrets["access token of "+k.String()] = c.Token.AccessToken.Reveal()
	}
	checkAbsent(t, w, secrets)
}

// checkAbsent searches the database files and the logs for each secret.
func checkAbsent(t *testing.T, w *world, secrets map[string]string) {
	t.Helper()
	files, _ := filepath.Glob(w.dbPath + "*")
	if len(files) == 0 {
		t.Fatal("no database files to search")
	}
	var dump []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dump = append(dump, b...)
	}
	if !bytes.Contains(dump, []byte(audit.FingerprintPrefix)) || !bytes.Contains(dump, []byte("token.vend")) {
		t.Fatal("the database files hold no audit record: the search proves nothing")
	}
	logs := w.logs.Bytes()
	for name, s := range secrets {
		if s == "" {
			continue
		}
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("%s is in the database files", name)
		}
		if bytes.Contains(logs, []byte(s)) {
			t.Errorf("%s is in the logs", name)
		}
	}
}
