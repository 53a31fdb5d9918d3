package storetest

import (
	"testing"

	"github.com/spotoken/spotoken"
)

// testEndpoints: endpoints round-trip per app, are replaced by a second
// set, need an existing app, and go with the app.
func testEndpoints(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	_, err := h.store.AppEndpoints(ctx, "a")
	wantErr(t, "endpoints never set", err, spotoken.ErrNotFound)
	wantErr(t, "set on a missing app", h.store.SetAppEndpoints(ctx, "nope", spotoken.Endpoints{AccountsURL: "http://x", APIURL: "http://y"}),
		spotoken.ErrNotFound)

	first := spotoken.Endpoints{AccountsURL: "http://127.0.0.1:1234", APIURL: "http://127.0.0.1:5678"}
	if err := h.store.SetAppEndpoints(ctx, "a", first); err != nil {
		t.Fatal(err)
	}
	got, err := h.store.AppEndpoints(ctx, "a")
	if err != nil || got != first {
		t.Fatalf("AppEndpoints(a) = %+v, %v; want %+v", got, err, first)
	}
	_, err = h.store.AppEndpoints(ctx, "b")
	wantErr(t, "another app's endpoints", err, spotoken.ErrNotFound)

	second := spotoken.Endpoints{AccountsURL: "https://accounts.spotify.com", APIURL: "https://api.spotify.com"}
	if err := h.store.SetAppEndpoints(ctx, "a", second); err != nil {
		t.Fatal(err)
	}
	if got, err := h.store.AppEndpoints(ctx, "a"); err != nil || got != second {
		t.Fatalf("after replacing: AppEndpoints(a) = %+v, %v; want %+v", got, err, second)
	}

	if err := h.store.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = h.store.AppEndpoints(ctx, "a")
	wantErr(t, "endpoints of a deleted app", err, spotoken.ErrNotFound)
	// An app made again under the name starts without them.
	h.newApp(t, "a")
	_, err = h.store.AppEndpoints(ctx, "a")
	wantErr(t, "endpoints of an app made again", err, spotoken.ErrNotFound)
}
