package console

// An app's API keys and settings, for operators: every change goes through
// admin.Service, which checks and records it.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

// keyView is an API key as its list shows it: never the key.
type keyView struct {
	ID, Name, Prefix, Status string
	Created, LastUsed        when
	Revoked                  when
	Active                   bool
	Revoke                   string
}

// keysPage is an app's API keys.
type keysPage struct {
	chrome
	Keys []keyView
	flashView
}

func (h *Handler) handleKeys(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	app, err := h.app(ctx, r.PathValue("app"))
	if err != nil {
		return err
	}
	keys, err := h.cfg.Store.APIKeys(ctx, app.ID)
	if err != nil {
		return err
	}
	now := h.cfg.Now()
	p := keysPage{chrome: h.chrome(r, s, app.ID, "keys"), flashView: h.flashOf(r, s)}
	for _, k := range keys {
		v := keyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Status: "active", Active: !k.Revoked(),
			Created: newWhen(k.CreatedAt, now), LastUsed: newWhen(k.LastUsedAt, now), Revoked: newWhen(k.RevokedAt, now),
			Revoke: h.appURL(app.ID) + "/keys/" + k.ID + "/revoke"}
		if k.Revoked() {
			v.Status = "revoked"
		}
		p.Keys = append(p.Keys, v)
	}
	h.render(w, r, http.StatusOK, pages.keys, p)
	return nil
}

func (h *Handler) handleCreateKey(w http.ResponseWriter, r *http.Request, s *session) error {
	app := r.PathValue("app")
	name := strings.TrimSpace(r.PostForm.Get("name"))
	key, rec, err := h.cfg.Admin.CreateAPIKey(r.Context(), s.actor(), app, name)
	if err != nil {
		return err
	}
	return h.done(w, r, s, &flash{Secret: &secretView{
		What: fmt.Sprintf("API key %s (%s…)", orDash(rec.Name), rec.Prefix), Value: key.Reveal(),
		Hint: "Copy it now into the service that calls spotoken: it is shown this once, and only its hash is kept.",
	}}, h.appURL(app)+"/keys")
}

func (h *Handler) handleRevokeKey(w http.ResponseWriter, r *http.Request, s *session) error {
	app, id := r.PathValue("app"), r.PathValue("key")
	if err := h.cfg.Admin.RevokeAPIKey(r.Context(), s.actor(), app, id); err != nil {
		return err
	}
	return h.done(w, r, s, &flash{Notice: fmt.Sprintf("Revoked API key %s: it stops working within seconds, and its console sessions end now.", id)},
		h.appURL(app)+"/keys")
}

// settingsPage is an app's settings, and the forms that change them.
type settingsPage struct {
	chrome
	ClientID, RedirectURIs, DefaultScopes, ReturnToOrigins, WebhookURL string
	// Public: the app has no client secret (PKCE).
	Public bool
	// Rotating: a client-secret rotation is under way (a previous secret
	// is kept); WebhookRotating the same for the webhook secret.
	Rotating, WebhookRotating, HasWebhookSecret bool
	Error                                       string
	flashView
}

func (h *Handler) settingsOf(r *http.Request, s *session, app *spotoken.App) settingsPage {
	return settingsPage{
		chrome: h.chrome(r, s, app.ID, "settings"), ClientID: app.ClientID,
		RedirectURIs: strings.Join(app.RedirectURIs, "\n"), DefaultScopes: app.DefaultScopes.Normalize().String(),
		ReturnToOrigins: strings.Join(app.ReturnToOrigins, "\n"), WebhookURL: app.WebhookURL,
		Public: app.ClientSecret == "", Rotating: app.PreviousClientSecret != "",
		WebhookRotating: app.PreviousWebhookSecret != "", HasWebhookSecret: app.WebhookSecret != "",
	}
}

func (h *Handler) handleSettings(w http.ResponseWriter, r *http.Request, s *session) error {
	app, err := h.app(r.Context(), r.PathValue("app"))
	if err != nil {
		return err
	}
	p := h.settingsOf(r, s, app)
	p.flashView = h.flashOf(r, s)
	h.render(w, r, http.StatusOK, pages.settings, p)
	return nil
}

// lines splits a textarea into its non-empty lines, trimmed.
func lines(s string) []string {
	out := []string{}
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// handleSaveSettings changes every setting the form holds that differs
// from the app's; an invalid form is shown again as typed, with what is
// wrong.
func (h *Handler) handleSaveSettings(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	app, err := h.app(ctx, r.PathValue("app"))
	if err != nil {
		return err
	}
	f := r.PostForm
	clientID := strings.TrimSpace(f.Get("client_id"))
	redirects, origins := lines(f.Get("redirect_uris")), lines(f.Get("return_to_origins"))
	scopes := spotoken.ParseScopes(f.Get("default_scopes"))
	webhook := strings.TrimSpace(f.Get("webhook_url"))
	var patch admin.AppPatch
	if clientID != app.ClientID {
		patch.ClientID = &clientID
	}
	if !slices.Equal(redirects, app.RedirectURIs) {
		patch.RedirectURIs = &redirects
	}
	if !slices.Equal(scopes, app.DefaultScopes.Normalize()) {
		patch.DefaultScopes = &scopes
	}
	if !slices.Equal(origins, app.ReturnToOrigins) {
		patch.ReturnToOrigins = &origins
	}
	if webhook != app.WebhookURL {
		patch.WebhookURL = &webhook
	}
	up, err := h.cfg.Admin.UpdateApp(ctx, s.actor(), app.ID, patch)
	if spotoken.ErrorCode(err) == spotoken.EInvalid {
		p := h.settingsOf(r, s, app)
		p.ClientID, p.RedirectURIs, p.DefaultScopes = clientID, f.Get("redirect_uris"), f.Get("default_scopes")
		p.ReturnToOrigins, p.WebhookURL = f.Get("return_to_origins"), webhook
		p.Error = spotoken.ErrorMessage(err) + ". Nothing was changed."
		h.render(w, r, http.StatusBadRequest, pages.settings, p)
		return nil
	}
	if err != nil {
		return err
	}
	fl := &flash{Notice: "Nothing changed."}
	if len(up.Changed) > 0 {
		fl.Notice = "Saved: " + strings.Join(up.Changed, ", ") + " changed."
		if up.Redelivered > 0 {
			fl.Notice += fmt.Sprintf(" %d failed event(s) are sent again now.", up.Redelivered)
		}
	}
	if up.WebhookSecret != "" {
		fl.Secret = webhookSecretView(up.WebhookSecret)
	}
	return h.done(w, r, s, fl, h.appURL(app.ID)+"/settings")
}

func webhookSecretView(secret spotoken.Secret) *secretView {
	return &secretView{What: "Webhook secret", Value: secret.Reveal(),
		Hint: "Give it to the webhook's receiver now: it is shown this once. Deliveries are signed with it (and, until the previous one is retired, with that one too)."}
}

// handleStageSecret stages a new client secret: presented first, with the
// previous one as the fallback until it is retired.
func (h *Handler) handleStageSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	secret := spotoken.Secret(strings.TrimSpace(r.PostForm.Get("client_secret")))
	if secret == "" {
		return spotoken.Errorf(spotoken.EInvalid, "Paste the new client secret from Spotify's developer dashboard. Nothing was changed.")
	}
	app := r.PathValue("app")
	up, err := h.cfg.Admin.UpdateApp(r.Context(), s.actor(), app, admin.AppPatch{ClientSecret: &secret})
	if err != nil {
		return err
	}
	notice := "The client secret is unchanged: it was the one already in use."
	if slices.Contains(up.Changed, "client_secret") {
		notice = "The new client secret is staged: spotoken presents it first, and the previous one whenever Spotify refuses it (invalid_client). " +
			"Retire the previous one once Spotify shows only the new one."
		if up.App.PreviousClientSecret == "" {
			notice = "The app has a client secret now."
		}
	}
	return h.done(w, r, s, &flash{Notice: notice}, h.appURL(app)+"/settings")
}

func (h *Handler) handleRetireSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	app := r.PathValue("app")
	if _, err := h.cfg.Admin.RetireClientSecret(r.Context(), s.actor(), app, r.PostForm.Get("force") != ""); err != nil {
		return err
	}
	return h.done(w, r, s, &flash{Notice: "The previous client secret is retired: only the current one is presented to Spotify."}, h.appURL(app)+"/settings")
}

func (h *Handler) handleRotateWebhookSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	app := r.PathValue("app")
	_, secret, err := h.cfg.Admin.RotateWebhookSecret(r.Context(), s.actor(), app)
	if err != nil {
		return err
	}
	return h.done(w, r, s, &flash{Notice: "New webhook secret: deliveries carry a signature under it and under the previous one until that is retired.",
		Secret: webhookSecretView(secret)}, h.appURL(app)+"/settings")
}

func (h *Handler) handleRetireWebhookSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	app := r.PathValue("app")
	if _, err := h.cfg.Admin.RetireWebhookSecret(r.Context(), s.actor(), app); err != nil {
		return err
	}
	return h.done(w, r, s, &flash{Notice: "The previous webhook secret is retired: deliveries carry only the current secret's signature."}, h.appURL(app)+"/settings")
}
