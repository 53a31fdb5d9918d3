package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/spotoken/spotoken"
)

// dashAuditRows is how many records the dashboard's audit page shows.
const dashAuditRows = 200

// auditActor returns r carrying the signed-in person as the actor of the
// changes it makes: the session's API key, from the request's address.
func (d *dashboard) auditActor(r *http.Request, sess *dashSession) *http.Request {
	if d.s.cfg.Audit == nil {
		return r
	}
	rec := d.s.auditActor(r, nil, ClientIP(r, d.s.cfg.TrustedProxies))
	rec.ActorType, rec.ActorID, rec.ActorLabel, rec.AppID = spotoken.ActorAPIKey, sess.keyID, sess.KeyLabel+" (dashboard)", sess.appID
	return withNote(r, rec)
}

type auditPageData struct {
	Base, AppID, KeyLabel, CSRF, ConnectionID, Now string
	Enabled                                        bool
	Rows                                           []auditRow
}

// auditRow is a record as the page shows it: strings only.
type auditRow struct {
	When                                          dashTime
	Action, Actor, ActorID, ClientIP, UserAgent   string
	Route, Status, Upstream, Outcome, Fingerprint string
}

// handleAudit shows a connection's latest audit records, newest first.
func (d *dashboard) handleAudit(w http.ResponseWriter, r *http.Request, sess *dashSession) {
	id := r.PathValue("id")
	if checkConnectionID(id) != nil {
		d.problem(w, r, http.StatusBadRequest, "Bad request", errBadConnectionID)
		return
	}
	now := d.s.cfg.Now()
	data := auditPageData{Base: d.base, AppID: sess.appID, KeyLabel: sess.KeyLabel, CSRF: sess.ws.CSRF.Reveal(), ConnectionID: id,
		Now: now.UTC().Format(dashTimeFormat), Enabled: d.s.cfg.Audit != nil}
	if d.s.cfg.Audit != nil {
		recs, err := d.s.cfg.Audit.Records(r.Context(), spotoken.AuditFilter{AppID: sess.appID, ConnectionID: id, Newest: true, Limit: dashAuditRows})
		if err != nil {
			d.fail(w, r, err)
			return
		}
		for _, rec := range recs {
			data.Rows = append(data.Rows, newAuditRow(rec, now))
		}
	}
	d.render(w, r, http.StatusOK, dashTemplates.audit, data)
}

func newAuditRow(rec *spotoken.AuditRecord, now time.Time) auditRow {
	row := auditRow{When: newDashTime(rec.At, now), Action: string(rec.Action), Actor: rec.ActorType, ActorID: rec.ActorID,
		ClientIP: rec.ClientIP, UserAgent: rec.UserAgent, Route: rec.Method + " " + rec.Route, Outcome: rec.Outcome,
		Fingerprint: rec.Fingerprint}
	if rec.ActorLabel != "" {
		row.ActorID = rec.ActorLabel
	}
	if rec.Status != 0 {
		row.Status = strconv.Itoa(rec.Status)
	}
	if rec.UpstreamStatus != 0 {
		row.Upstream = strconv.Itoa(rec.UpstreamStatus)
	}
	if rec.Method == "" {
		row.Route = rec.Route
	}
	return row
}
