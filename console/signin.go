package console

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/server"
)

// loginPage is the sign-in page's view.
type loginPage struct {
	chrome
	Notice, Error string
}

func (h *Handler) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	p := loginPage{chrome: h.chrome(r, nil, "", "")}
	switch {
	case r.URL.Query().Get("ended") != "":
		p.Notice = "Your session ended: it expired, was unused for an hour, or its credential was revoked. Sign in again."
	case r.URL.Query().Get("signed_out") != "":
		p.Notice = "You are signed out."
	}
	h.render(w, r, http.StatusOK, pages.login, p)
}

// errBadCredential is every refused sign-in: the person learns no more.
const errBadCredential = "That credential is not valid: it is mistyped, revoked, or neither an admin credential (sa_…) nor an API key (sk_…)."

// maxCredential bounds what is hashed and looked up.
const maxCredential = 128

// handleLogin signs a person in: an admin credential (sa_…) makes an
// operator's session, an API key (sk_…) an app team's. The credential is
// checked as the admin API and the API check it, then looked up afresh as
// every later request does; it is never kept, echoed or logged.
func (h *Handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	setHeaders(w)
	if !h.sessions.SameOrigin(r) {
		h.refuse(w, r)
		return
	}
	fail := func(status int, msg string) {
		h.render(w, r, status, pages.login, loginPage{chrome: h.chrome(r, nil, "", ""), Error: msg})
	}
	ip := server.ClientIP(r, h.cfg.TrustedProxies)
	if h.cfg.AuthLimit != nil {
		if wait := h.cfg.AuthLimit.AuthWait(ip); wait > 0 {
			secs := strconv.Itoa(int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", secs)
			fail(http.StatusTooManyRequests, "Too many refused sign-ins from this address; try again after "+secs+" seconds.")
			return
		}
	}
	if err := readForm(w, r); err != nil {
		fail(server.HTTPStatus(spotoken.ErrorCode(err)), spotoken.ErrorMessage(err))
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("credential"))
	if raw == "" {
		raw = strings.TrimSpace(r.PostForm.Get("api_key")) // the dashboard's form
	}
	if raw == "" {
		fail(http.StatusBadRequest, "Paste an admin credential (sa_…) to see every app, or one of an app's API keys (sk_…) to see that app.")
		return
	}
	in, s, err := h.authenticate(r, spotoken.Secret(raw))
	if errors.Is(err, errRefused) {
		h.log.Info("console: sign-in refused", "request_id", server.RequestID(r))
		if h.cfg.AuthLimit != nil {
			rec := spotoken.AuditRecord{Action: spotoken.AuditAuthFailed, ActorType: spotoken.ActorAnonymous,
				UserAgent: server.AuditUserAgent(r), RequestID: server.RequestID(r), Method: r.Method,
				Route: strings.TrimPrefix(r.Pattern, r.Method+" "), Status: http.StatusUnauthorized, Outcome: "invalid_token"}
			if ip.IsValid() {
				rec.ClientIP = ip.String()
			}
			h.cfg.AuthLimit.Record(rec)
		}
		fail(http.StatusUnauthorized, errBadCredential)
		return
	}
	if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	// A new session, never the browser's old one, which ends.
	if _, err := h.sessions.Start(w, r, in); err != nil {
		h.fail(w, r, nil, err)
		return
	}
	h.log.Info("console: signed in", "request_id", server.RequestID(r), "kind", in.Kind, "app", in.AppID, "subject", in.Subject)
	to := h.base + "/console/"
	if !s.operator() {
		to = h.appURL(s.appID)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// errRefused is authenticate's error for a credential that is not valid.
var errRefused = errors.New("console: credential refused")

// authenticate checks a credential and returns the session to start and
// who it is for.
func (h *Handler) authenticate(r *http.Request, raw spotoken.Secret) (websession.SignIn, *session, error) {
	ctx := r.Context()
	value := raw.Reveal()
	if len(value) > maxCredential {
		return websession.SignIn{}, nil, errRefused
	}
	if strings.HasPrefix(value, spotoken.AdminKeyPrefix) {
		k, err := h.cfg.Admin.Authenticate(ctx, raw)
		if errors.Is(err, admin.ErrInvalidAdminKey) {
			return websession.SignIn{}, nil, errRefused
		}
		if err != nil {
			return websession.SignIn{}, nil, err
		}
		hash := spotoken.HashAdminKey(raw)
		s := &session{subject: k.ID, data: sessionData{KeyHash: hash[:], Label: credentialLabel(k.Name, k.Prefix), Name: k.Name}}
		return websession.SignIn{Kind: kindAdmin, Subject: k.ID, Data: s.data.encode()}, s, nil
	}
	if !strings.HasPrefix(value, spotoken.APIKeyPrefix) {
		return websession.SignIn{}, nil, errRefused
	}
	hash := spotoken.HashAPIKey(raw)
	k, err := h.cfg.Store.APIKeyByHash(ctx, hash)
	if errors.Is(err, spotoken.ErrNotFound) {
		return websession.SignIn{}, nil, errRefused
	}
	if err != nil {
		return websession.SignIn{}, nil, err
	}
	s := &session{appID: k.AppID, subject: k.ID, data: sessionData{KeyHash: hash[:], Label: credentialLabel(k.Name, k.Prefix)}}
	if ok, err := h.credentialActive(ctx, s); err != nil {
		return websession.SignIn{}, nil, err
	} else if !ok {
		return websession.SignIn{}, nil, errRefused
	}
	return websession.SignIn{Kind: kindApp, AppID: k.AppID, Subject: k.ID, Data: s.data.encode()}, s, nil
}

// credentialLabel names a credential for pages: its name and the start of
// its value, which the store keeps to tell credentials apart.
func credentialLabel(name, prefix string) string {
	label := prefix + "…"
	if name != "" {
		label = name + " (" + label + ")"
	}
	return label
}

func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := h.sessions.End(w, r); err != nil {
		return err
	}
	h.log.Info("console: signed out", "request_id", server.RequestID(r), "app", s.appID, "subject", s.subject)
	http.Redirect(w, r, h.base+"/console/login?signed_out=1", http.StatusSeeOther)
	return nil
}

// handleHome is an operator's apps list; an app team goes to its app.
func (h *Handler) handleHome(w http.ResponseWriter, r *http.Request, s *session) error {
	if !s.operator() {
		http.Redirect(w, r, h.appURL(s.appID), http.StatusSeeOther)
		return nil
	}
	return h.appsList(w, r, s)
}
