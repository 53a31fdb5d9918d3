package emulator_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/emulator"
)

// The tests of what Spotify changed in 2025 and 2026 (SPOTIFY.md): player
// commands without a device, paused playback, development mode's lost
// endpoints and fields, Retry-After windows of hours, allowlists of five.

// TestWebAPIPlayback: paused playback is 200 with is_playing false
// (spotify/web-api#1373), not 204; a player command for a user with no
// active device is 404 NO_ACTIVE_DEVICE (Yooooomi/your_spotify#136);
// Premium is checked first.
func TestWebAPIPlayback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.pkceGrant("user-read-currently-playing user-modify-playback-state").str("access_token")
	current := func() apiResult {
		t.Helper()
		return e.api("GET", "/v1/me/player/currently-playing", tok, "")
	}
	put := func(path string) {
		t.Helper()
		if res := e.api("PUT", path, tok, ""); res.Status != http.StatusNoContent {
			t.Fatalf("PUT %s: %d %s", path, res.Status, res.Raw)
		}
	}

	// Pausing with nothing playing changes nothing.
	put("/v1/me/player/pause")
	if res := current(); res.Status != http.StatusNoContent {
		t.Fatalf("nothing playing: %d %s, want 204", res.Status, res.Raw)
	}

	put("/v1/me/player/play")
	e.emu.Advance(3 * time.Second)
	put("/v1/me/player/pause")
	e.emu.Advance(time.Minute) // progress stands still while paused
	res := current()
	if res.Status != http.StatusOK {
		t.Fatalf("paused: %d %s, want 200", res.Status, res.Raw)
	}
	item, _ := res.Body["item"].(map[string]any)
	got := map[string]any{"is_playing": res.Body["is_playing"], "progress_ms": res.Body["progress_ms"], "has item": item != nil,
		"disallows": res.Body["actions"].(map[string]any)["disallows"]}
	want := map[string]any{"is_playing": false, "progress_ms": float64(3000), "has item": true,
		"disallows": map[string]any{"pausing": true}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("paused playback (-got +want):\n%s", diff)
	}

	// Play without a body resumes where it was paused.
	put("/v1/me/player/play")
	e.emu.Advance(2 * time.Second)
	res = current()
	if res.Body["is_playing"] != true || res.Body["progress_ms"] != float64(5000) {
		t.Errorf("resumed: is_playing %v progress_ms %v, want true 5000", res.Body["is_playing"], res.Body["progress_ms"])
	}

	// No active device: play and pause are 404 NO_ACTIVE_DEVICE.
	if err := e.emu.AddUser(emulator.User{ID: "dora", NoDevice: true}); err != nil {
		t.Fatal(err)
	}
	dora := userToken(e, "dora", "user-modify-playback-state")
	for _, path := range []string{"/v1/me/player/play", "/v1/me/player/pause"} {
		checkAPIError(t, e.api("PUT", path, dora, ""), http.StatusNotFound, "Player command failed: No active device found", "NO_ACTIVE_DEVICE", "")
	}
	// Over the control API too, and Premium is checked before the device.
	if code, body := e.control("POST", "users", `{"id":"fred","product":"free","no_device":true}`); code != http.StatusCreated {
		t.Fatalf("POST users: %d %s", code, body)
	}
	fred := userToken(e, "fred", "user-modify-playback-state")
	checkAPIError(t, e.api("PUT", "/v1/me/player/play", fred, ""), http.StatusForbidden, "Player command failed: Premium required", "PREMIUM_REQUIRED", "")
}

// TestDevelopmentMode: what development-mode apps lost in 2026-02/03
// (SPOTIFY.md, "Rate limits"): POST /v1/users/{user_id}/playlists answers
// 403 Forbidden (spotify-web-api-java#445) while POST /v1/me/playlists works;
// a playlist's tracks are under "items"; tracks and artists have no
// popularity, artists no followers (adamint/spotify-web-api-kotlin#344,
// zmb3/spotify#296). Without development mode everything is as it was.
func TestDevelopmentMode(t *testing.T) {
	t.Parallel()
	for _, dev := range []bool{false, true} {
		name := "extended quota"
		if dev {
			name = "development mode"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *emulator.Config) { c.DevelopmentMode = dev })
			tok := e.pkceGrant("playlist-read-private playlist-modify-public playlist-modify-private user-top-read").str("access_token")
			items, gone := "tracks", "items"
			if dev {
				items, gone = gone, items
			}

			res := e.api("POST", "/v1/users/alice/playlists", tok, `{"name":"Old way"}`)
			if dev {
				checkAPIError(t, res, http.StatusForbidden, "Forbidden", "", "")
			} else if res.Status != http.StatusCreated {
				t.Errorf("POST /v1/users/alice/playlists: %d %s, want 201", res.Status, res.Raw)
			}
			res = e.api("POST", "/v1/me/playlists", tok, `{"name":"New way","public":false}`)
			if res.Status != http.StatusCreated || res.Body["name"] != "New way" || res.Body["public"] != false {
				t.Fatalf("POST /v1/me/playlists: %d %s, want 201 with the playlist", res.Status, res.Raw)
			}
			if _, ok := res.Body[items].(map[string]any); !ok {
				t.Errorf("created playlist: no %q object in %v", items, sortedKeys(res.Body))
			}
			if _, ok := res.Body[gone]; ok {
				t.Errorf("created playlist has %q", gone)
			}
			id := res.Body["id"]

			list := e.api("GET", "/v1/me/playlists", tok, "")
			pls, _ := list.Body["items"].([]any)
			var found map[string]any
			for _, p := range pls {
				if p := p.(map[string]any); p["id"] == id {
					found = p
				}
			}
			if found == nil {
				t.Fatalf("GET /v1/me/playlists does not list the playlist POST /v1/me/playlists created: %s", list.Raw)
			}
			ref, _ := found[items].(map[string]any)
			if href, _ := ref["href"].(string); !strings.HasSuffix(href, "/v1/playlists/"+id.(string)+"/"+items) {
				t.Errorf("listed playlist %s = %v, want an href ending /%s", items, found[items], items)
			}
			if _, ok := found[gone]; ok {
				t.Errorf("listed playlist has %q", gone)
			}

			tracks := e.api("GET", "/v1/me/top/tracks", tok, "").Body["items"].([]any)
			artists := e.api("GET", "/v1/me/top/artists", tok, "").Body["items"].([]any)
			track, artist := tracks[0].(map[string]any), artists[0].(map[string]any)
			has := map[string]bool{}
			for k, o := range map[string]map[string]any{"track": track, "artist": artist} {
				for _, f := range []string{"popularity", "followers"} {
					_, ok := o[f]
					has[k+"."+f] = ok
				}
			}
			want := map[string]bool{"track.popularity": !dev, "track.followers": false, "artist.popularity": !dev, "artist.followers": !dev}
			if diff := cmp.Diff(has, want); diff != "" {
				t.Errorf("fields present (-got +want):\n%s", diff)
			}
		})
	}
}

// TestPenaltyWindow: a 429 whose Retry-After is hours (79,892 s seen,
// Yooooomi/your_spotify#411) and which grows when called during the window
// (spotipy#1158), on the token endpoint and the Web API.
func TestPenaltyWindow(t *testing.T) {
	t.Parallel()

	t.Run("token endpoint", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		rt := e.pkceGrant("").str("refresh_token")
		if code, body := e.control("POST", "faults", `{"token_status":429,"retry_after":7200,"window":true,"window_growth":"10m"}`); code != http.StatusNoContent {
			t.Fatalf("POST faults: %d %s", code, body)
		}
		retryAfter := func() string {
			t.Helper()
			r := e.refreshPublic(rt)
			if r.Status != http.StatusOK && (r.Status != http.StatusTooManyRequests || r.Raw != "") {
				t.Fatalf("refresh: %d %q, want 429 with no body", r.Status, r.Raw)
			}
			if r.Status == http.StatusOK {
				return "served"
			}
			return r.Header.Get("Retry-After")
		}
		var got []string
		got = append(got, retryAfter()) // opens the window: 2 h
		e.emu.Advance(time.Hour)
		got = append(got, retryAfter()) // 1 h left, plus 10 min for calling
		e.emu.Advance(time.Hour)
		got = append(got, retryAfter()) // the 10 min, plus 10 more
		e.emu.Advance(20*time.Minute - time.Second)
		got = append(got, retryAfter()) // 1 s left, plus 10 min
		e.emu.Advance(10*time.Minute + time.Second)
		got = append(got, retryAfter()) // over: the fault is gone
		got = append(got, retryAfter())
		want := []string{"7200", "4200", "1200", "601", "served", "served"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("Retry-After of successive refreshes (-got +want):\n%s", diff)
		}
		if n := e.emu.Stats().TokenErrors["http_429"]; n != 4 {
			t.Errorf("http_429 count %d, want 4", n)
		}
	})

	t.Run("Web API, default growth", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		tok := e.pkceGrant("").str("access_token")
		wait := 79892
		if err := e.emu.SetFaults(emulator.Faults{APIStatus: 429, RetryAfter: &wait, Window: true}); err != nil {
			t.Fatal(err)
		}
		first := e.api("GET", "/v1/me", tok, "")
		checkAPIError(t, first, http.StatusTooManyRequests, "API rate limit exceeded", "", "")
		checkRetryAfter(t, first.Header, wait, wait)
		second := e.api("GET", "/v1/me", tok, "")
		checkRetryAfter(t, second.Header, wait+int(emulator.DefaultWindowGrowth/time.Second), wait+int(emulator.DefaultWindowGrowth/time.Second))
		e.emu.Advance(time.Duration(wait)*time.Second + emulator.DefaultWindowGrowth)
		if res := e.api("GET", "/v1/me", e.pkceGrant("").str("access_token"), ""); res.Status != http.StatusOK {
			t.Errorf("after the window: %d %s", res.Status, res.Raw)
		}
	})

	t.Run("no growth", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		tok := e.pkceGrant("").str("access_token")
		if code, body := e.control("POST", "faults", `{"api_status":429,"retry_after":60,"window":true,"window_growth":"-1s"}`); code != http.StatusNoContent {
			t.Fatalf("POST faults: %d %s", code, body)
		}
		for _, want := range []int{60, 60} {
			checkRetryAfter(t, e.api("GET", "/v1/me", tok, "").Header, want, want)
		}
	})

	for _, bad := range []string{
		`{"window":true,"retry_after":60}`,
		`{"token_status":503,"window":true,"retry_after":60}`,
		`{"token_status":429,"window":true}`,
		`{"token_status":429,"window":true,"retry_after":0}`,
		`{"api_status":429,"window":true,"retry_after":60,"count":2}`,
		`{"api_status":429,"window":true,"retry_after":60,"window_growth":"soon"}`,
	} {
		t.Run("refused "+bad, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			if code, body := e.control("POST", "faults", bad); code != http.StatusBadRequest {
				t.Errorf("POST faults %s: %d %s, want 400", bad, code, body)
			}
		})
	}
}

// TestAllowlist: a development-mode app serves at most five users (2026);
// the --allowlist syntax.
func TestAllowlist(t *testing.T) {
	t.Parallel()
	five := []string{"u1", "u2", "u3", "u4", "u5"}
	cfg := func(list []string) emulator.Config {
		return emulator.Config{Clients: []emulator.Client{{ID: "dev", RedirectURIs: []string{pubRedirect}, Allowlist: list}}}
	}
	if _, err := emulator.New(cfg(five)); err != nil {
		t.Errorf("five users: %v", err)
	}
	if _, err := emulator.New(cfg(append(five, "u6"))); err == nil || !strings.Contains(err.Error(), "at most 5") {
		t.Errorf("six users: %v, want an error saying at most 5", err)
	}
	if _, err := emulator.New(cfg([]string{"not a user"})); err == nil {
		t.Error("a malformed user id was accepted")
	}

	// The owner edits the list: issued tokens are judged by the new one.
	e := newEnv(t, nil)
	tok := e.pkceGrant("").str("access_token")
	if code, body := e.control("PUT", "clients/"+pubID+"/allowlist", `{"users":["carol"]}`); code != http.StatusNoContent {
		t.Fatalf("PUT allowlist: %d %s", code, body)
	}
	if res := rawAPI(t, e, "GET", "/v1/me", "Bearer "+tok, ""); res.Status != http.StatusForbidden || res.Raw != "User not registered in the Developer Dashboard" {
		t.Errorf("alice after the owner left her off: %d %q", res.Status, res.Raw)
	}
	if code, _ := e.control("PUT", "clients/"+pubID+"/allowlist", `{"users":["a","b","c","d","e","f"]}`); code != http.StatusBadRequest {
		t.Errorf("six users: %d, want 400", code)
	}
	if code, _ := e.control("PUT", "clients/nobody/allowlist", `{"users":[]}`); code != http.StatusNotFound {
		t.Errorf("unknown client: %d, want 404", code)
	}
	if code, _ := e.control("PUT", "clients/"+pubID+"/allowlist", `{"users":[]}`); code != http.StatusNoContent {
		t.Errorf("empty list: %d, want 204", code)
	}
	if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
		t.Errorf("alice with no allowlist: %d %s", res.Status, res.Raw)
	}

	for _, tc := range []struct {
		in, client string
		users      []string
		ok         bool
	}{
		{"alice", "", []string{"alice"}, true},
		{"alice,bob", "", []string{"alice", "bob"}, true},
		{"my-app=alice, bob", "my-app", []string{"alice", "bob"}, true},
		{"=alice", "", nil, false},
		{"my-app=", "", nil, false},
		{"alice,,bob", "", nil, false},
		{"a b", "", nil, false},
	} {
		client, users, err := emulator.ParseAllowlist(tc.in)
		if (err == nil) != tc.ok || client != tc.client || !slices.Equal(users, tc.users) {
			t.Errorf("ParseAllowlist(%q) = %q, %q, %v; want %q, %q, ok %v", tc.in, client, users, err, tc.client, tc.users, tc.ok)
		}
	}
}

// TestRevocationKeepsAccessToken: after the user removes the app (SPOTIFY.md,
// "Revocation"), refresh answers invalid_grant while the access token keeps
// working until it expires.
func TestRevocationKeepsAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	grant := e.pkceGrant("")
	if code, body := e.control("POST", "users/alice/revoke", `{"client_id":"`+pubID+`"}`); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if r := e.refreshPublic(grant.str("refresh_token")); r.str("error") != "invalid_grant" {
		t.Errorf("refresh after revocation: %d %s, want invalid_grant", r.Status, r.Raw)
	}
	if res := e.api("GET", "/v1/me", grant.str("access_token"), ""); res.Status != http.StatusOK {
		t.Errorf("access token after revocation: %d %s, want 200", res.Status, res.Raw)
	}
	e.emu.Advance(emulator.DefaultTokenTTL)
	checkAPIError(t, e.api("GET", "/v1/me", grant.str("access_token"), ""), http.StatusUnauthorized, message2026, "", "")
}
