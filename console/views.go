package console

// The pages' views. Every field a template sees is a string (or a bool, a
// count, or a struct or list of those), made here from the domain, so no
// token can reach a template: a listing's connections carry no token, and
// a view could not hold one if they did.

import (
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/spotoken/spotoken"
)

// chrome is what the layout needs on every page: where links start, who is
// signed in, the CSRF token for the page's forms, where in the console the
// page is.
type chrome struct {
	Base     string
	SignedIn bool
	// Operator: signed in with an admin credential (every app).
	Operator bool
	Who      string
	CSRF     string
	// App and Tab place the page: the app whose tabs show, and the tab.
	App, Tab string
	// Query is the search box's text.
	Query string
	// Now is the time the page was made, as the page shows times.
	Now string
}

func (h *Handler) chrome(r *http.Request, s *session, app, tab string) chrome {
	c := chrome{Base: h.base, App: app, Tab: tab, Now: h.cfg.Now().UTC().Format(timeFormat)}
	if s != nil {
		c.SignedIn, c.Operator, c.Who, c.CSRF = true, s.operator(), s.data.Label, s.ws.CSRF.Reveal()
		if !s.operator() {
			c.Who = "app " + s.appID + " · key " + s.data.Label
		}
	}
	if r.URL.Path == h.base+"/console/search" {
		c.Query = truncate(r.URL.Query().Get("q"), 128)
	}
	return c
}

// The pages, each with the layout.
var pages = struct {
	login, problem, apps, app, connection, search, deliveries, keys, settings *template.Template
}{
	login:      page("login.html"),
	problem:    page("problem.html"),
	apps:       page("apps.html"),
	app:        page("app.html"),
	connection: page("connection.html"),
	search:     page("search.html"),
	deliveries: page("deliveries.html"),
	keys:       page("keys.html"),
	settings:   page("settings.html"),
}

// page parses a page with the layout and the shared pieces.
func page(name string) *template.Template {
	return template.Must(template.New(name).Funcs(template.FuncMap{"orDash": orDash, "title": capitalize}).
		ParseFS(files, "templates/layout.html", "templates/parts.html", "templates/"+name))
}

// timeFormat is how pages write times: UTC, to the minute.
const timeFormat = "2006-01-02 15:04 UTC"

// when is a time as a page shows it: machine-readable, readable, relative.
type when struct {
	ISO, Text, Rel string
}

// newWhen returns t's view; the zero time gives the zero view (shown "—").
func newWhen(t, now time.Time) when {
	if t.IsZero() {
		return when{}
	}
	return when{ISO: t.UTC().Format(time.RFC3339), Text: t.UTC().Format(timeFormat), Rel: relTime(t.Sub(now))}
}

// relTime says how far off d is, roughly: "in 59 min", "3 h ago".
func relTime(d time.Duration) string {
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		return "now"
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}

// stateLabels name the states on pages.
var stateLabels = map[spotoken.State]string{
	spotoken.StateActive:      "Active",
	spotoken.StateNeedsReauth: "Needs re-authorization",
	spotoken.StateRevoked:     "Revoked",
}

func stateLabel(s spotoken.State) string {
	if l, ok := stateLabels[s]; ok {
		return l
	}
	return string(s)
}

// linkView is a connect link just made, shown once.
type linkView struct {
	ConnectionID string `json:"connection_id"`
	URL          string `json:"url"`
	Expires      string `json:"expires"`
}

// secretView is a secret shown once: what it is, its value, and what to do
// with it.
type secretView struct {
	What  string `json:"what"`
	Value string `json:"value"`
	Hint  string `json:"hint"`
}

// token is what a connection's access token looks like on a page: when it
// expires, or why it is of no use. It never holds the token.
type tokenView struct {
	At when
	// Note replaces the expiry when the token cannot be used: the
	// connection needs re-authorization (its access token is not served
	// and will not be refreshed), or was revoked.
	Note string
}

func newTokenView(c *spotoken.Connection, now time.Time) tokenView {
	switch c.State {
	case spotoken.StateNeedsReauth:
		return tokenView{Note: "not served: the user must authorize again"}
	case spotoken.StateRevoked:
		return tokenView{Note: "erased"}
	}
	if c.Token.Expiry.IsZero() {
		return tokenView{Note: "none yet"}
	}
	t := tokenView{At: newWhen(c.Token.Expiry, now)}
	if !c.Token.Expiry.After(now) {
		t.Note = "expired " + t.At.Rel + "; refreshed when next asked for"
	}
	return t
}

// backoffView says when a connection in backoff is tried again; empty when
// it is not held back.
func backoffView(c *spotoken.Connection, now time.Time) when {
	if c.State != spotoken.StateActive || !c.NextAttemptAt.After(now) {
		return when{}
	}
	return newWhen(c.NextAttemptAt, now)
}

// rowView is a connection in a listing.
type rowView struct {
	App, ID, URL, DisplayName, SpotifyUser, State, StateLabel, LastError string
	Scopes                                                               int
	Token                                                                tokenView
	GrantExpires, LastRefresh, RetryAt                                   when
	// NeedsLink: the row offers a connect link (the user must authorize
	// again).
	NeedsLink bool
}

func (h *Handler) newRow(c *spotoken.Connection, now time.Time) rowView {
	name := c.DisplayName
	if name == c.SpotifyUserID {
		name = ""
	}
	return rowView{
		App: c.AppID, ID: c.ID, URL: h.connURL(c.AppID, c.ID), DisplayName: name, SpotifyUser: c.SpotifyUserID,
		State: string(c.State), StateLabel: stateLabel(c.State), LastError: c.LastErrorCode, Scopes: len(c.Scopes),
		Token: newTokenView(c, now), GrantExpires: newWhen(c.GrantExpiresAt, now), LastRefresh: newWhen(c.LastRefreshAt, now),
		RetryAt: backoffView(c, now), NeedsLink: c.State == spotoken.StateNeedsReauth,
	}
}

// rowsView is a table of connections: the rows, whether to name each
// row's app (a search across apps), and the CSRF token of their forms.
type rowsView struct {
	Rows    []rowView
	ShowApp bool
	CSRF    string
}

// flashView is what a page shows once: the outcome of the action that led
// to it, a connect link or a secret just made.
type flashView struct {
	Notice string
	Link   *linkView
	Secret *secretView
}

// flashOf takes the session's flash, if any, for the page.
func (h *Handler) flashOf(r *http.Request, s *session) flashView {
	f := h.takeFlash(r, s)
	if f == nil {
		return flashView{}
	}
	return flashView{Notice: f.Notice, Link: f.Link, Secret: f.Secret}
}

// capitalize upper-cases the first letter of an ASCII label.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
