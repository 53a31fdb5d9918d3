package admin_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

func ptr[T any](v T) *T { return &v }

// The BFF's settings change through UpdateApp like any other: checked
// before anything is stored, recorded by name, kept when not given.
func TestUpdateBrowserApp(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid", RedirectURIs: []string{"https://b.example/callback"}}); err != nil {
		t.Fatal(err)
	}
	if b, err := e.svc.BrowserApp(ctx, "a"); b != nil || err != nil {
		t.Fatalf("a new app's BFF: %v, %v; want off", b, err)
	}
	// Off, and no origins given: refused, and the app's own change with it.
	_, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{ClientID: ptr("other"),
		BrowserApp: &admin.BrowserAppPatch{TokenScopes: &spotoken.Scopes{"streaming"}}})
	if spotoken.ErrorCode(err) != spotoken.EInvalid || !strings.Contains(spotoken.ErrorMessage(err), "bff.origins") {
		t.Errorf("token scopes for an app whose BFF is off: %v", err)
	}
	if app, _ := e.svc.App(ctx, "a"); app.ClientID != "cid" {
		t.Errorf("a refused BFF change changed the client id to %q", app.ClientID)
	}

	up, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{BrowserApp: &admin.BrowserAppPatch{
		Origins: &[]string{"HTTPS://SPA.Example:443/", "https://spa.example"}, Scopes: &spotoken.Scopes{"user-read-private"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(up.Changed, []string{"bff_origins", "bff_scopes"}) || !slices.Equal(e.last().Fields, up.Changed) {
		t.Errorf("changed %v, recorded %v", up.Changed, e.last().Fields)
	}
	b, err := e.svc.BrowserApp(ctx, "a")
	if err != nil || !slices.Equal(b.Origins, []string{"https://spa.example"}) || b.TokenMediating() {
		t.Fatalf("BFF after turning it on: %+v, %v", b, err)
	}
	up, err = e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{BrowserApp: &admin.BrowserAppPatch{TokenScopes: &spotoken.Scopes{"streaming"}}})
	if err != nil || !slices.Equal(up.Changed, []string{"bff_token_scopes"}) {
		t.Fatalf("token scopes: %v, %v", up, err)
	}
	if b, _ := e.svc.BrowserApp(ctx, "a"); !b.TokenMediating() || len(b.Origins) != 1 || b.Scopes.String() != "user-read-private" {
		t.Errorf("after token scopes: %+v, want the rest kept", b)
	}
	for _, bad := range []admin.BrowserAppPatch{
		{Origins: &[]string{"https://spa.example/app"}},
		{Origins: &[]string{"*"}},
		{Scopes: &spotoken.Scopes{"not-a-scope"}},
		{TokenScopes: &spotoken.Scopes{"streaming", "nope"}},
	} {
		if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{BrowserApp: &bad}); spotoken.ErrorCode(err) != spotoken.EInvalid {
			t.Errorf("patch %+v: %v, want invalid", bad, err)
		}
	}
	up, err = e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{BrowserApp: &admin.BrowserAppPatch{Origins: &[]string{}}})
	if err != nil || !slices.Contains(up.Changed, "bff_origins") {
		t.Fatalf("turning the BFF off: %v, %v", up, err)
	}
	if b, err := e.svc.BrowserApp(ctx, "a"); b != nil || err != nil {
		t.Errorf("after turning it off: %v, %v", b, err)
	}
}
