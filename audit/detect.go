package audit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
)

// Detectors are the detectors' thresholds. Zero fields take the defaults
// (see docs/audit.md for each rule and why its default is what it is).
type Detectors struct {
	// NewNetworkLearning: an API key's networks (IPv4 /24, IPv6 /48) seen
	// within this long of its first use are learned silently; a network
	// first seen after it raises alert.new_network. Default 24h.
	NewNetworkLearning time.Duration

	// UsageWindow is the window in which a connection's vends (and,
	// separately, its proxied calls) are counted. Default 5m.
	UsageWindow time.Duration
	// UsageFactor and UsageMin: a window whose count reaches
	// max(UsageMin, UsageFactor × the connection's recent peak window)
	// raises alert.usage_spike. Defaults 10 and 100.
	UsageFactor float64
	UsageMin    int
	// UsageLearning: a connection is watched only once it has been seen
	// for this long (in this process). Default 1h.
	UsageLearning time.Duration
	// UsagePeakHalfLife is how fast the recent peak forgets. Default 24h.
	UsagePeakHalfLife time.Duration
	// UsageMaxTracked bounds the connections tracked in memory. Default 100,000.
	UsageMaxTracked int

	// ReauthWindow, ReauthMin and ReauthFraction: when, within
	// ReauthWindow, at least ReauthMin of an app's connections and at
	// least ReauthFraction of them moved to needs_reauth (grant expiries
	// by our clock left out), alert.reauth_surge. Defaults 1h, 10, 0.1.
	ReauthWindow   time.Duration
	ReauthMin      int
	ReauthFraction float64

	// ReuseHold is how long a refresh-token reuse suspicion waits before it
	// is raised, so that one that is part of a needs_reauth surge is
	// folded into the surge's alert. Default 5m.
	ReuseHold time.Duration

	// Cooldown: a detector fires once per subject (key and network,
	// connection, app) per episode; an episode ends after Cooldown without
	// the condition. Default 1h.
	Cooldown time.Duration

	// AuthFailures within AuthWindow from one address (IPv4 address, IPv6
	// /64) put it under the limit: its requests are refused with 429 for
	// AuthBlock. AuthMaxTracked bounds the addresses remembered. Defaults
	// 20, 10m, 15m, 10,000.
	AuthFailures   int
	AuthWindow     time.Duration
	AuthBlock      time.Duration
	AuthMaxTracked int
}

func (d *Detectors) defaults() {
	def := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&d.NewNetworkLearning, 24*time.Hour)
	def(&d.UsageWindow, 5*time.Minute)
	def(&d.UsageLearning, time.Hour)
	def(&d.UsagePeakHalfLife, 24*time.Hour)
	def(&d.ReauthWindow, time.Hour)
	def(&d.ReuseHold, 5*time.Minute)
	def(&d.Cooldown, time.Hour)
	def(&d.AuthWindow, 10*time.Minute)
	def(&d.AuthBlock, 15*time.Minute)
	if d.UsageFactor <= 1 {
		d.UsageFactor = 10
	}
	if d.UsageMin <= 0 {
		d.UsageMin = 100
	}
	if d.UsageMaxTracked <= 0 {
		d.UsageMaxTracked = 100000
	}
	if d.ReauthMin <= 0 {
		d.ReauthMin = 10
	}
	if d.ReauthFraction <= 0 {
		d.ReauthFraction = 0.1
	}
	if d.AuthFailures <= 0 {
		d.AuthFailures = 20
	}
	if d.AuthMaxTracked <= 0 {
		d.AuthMaxTracked = 10000
	}
}

// The detectors' names: in alert records, event data and the metric's
// detector label.
const (
	DetectNewNetwork   = "new_network"
	DetectUsageSpike   = "usage_spike"
	DetectReauthSurge  = "reauth_surge"
	DetectRefreshReuse = "refresh_token_reuse"
	DetectAuthLimited  = "auth_limited"
)

// The kinds of marks the detectors keep in the store.
const (
	markKeyFirstUse = "key_first_use" // subject: the key's id
	markNetwork     = "network"       // subject: key id and network
	markRotated     = "rotated"       // subject: connection id
	markReauth      = "reauth"        // subject: connection id
	markAlert       = "alert:"        // + detector; subject per detector
)

// remarkEvery is how often a known mark is written again, to keep it from
// retention.
const remarkEvery = 12 * time.Hour

// detectors holds the detectors' state in memory. Its methods run on the
// flushing goroutine (under Trail.flushMu), except count and counts.
type detectors struct {
	t   *Trail
	cfg Detectors

	known    map[string]time.Time  // marks written recently, by kind+app+subject: when
	firstUse map[string]keyUse     // by app+key id
	seen     map[seenKey]time.Time // key and address pairs checked, and when
	usage    map[usageKey]*usageState
	// usageScanned is the window in which evictUsage last scanned usage,
	// and usageScans how many scans it made (for tests).
	usageScanned int64
	usageScans   int
	// pending are reuse suspicions waiting out ReuseHold.
	pending []suspicion

	mu     sync.Mutex
	alerts map[[2]string]int64 // by detector and app
}

type keyUse struct{ first, written time.Time }

type seenKey struct{ app, key, ip string }

type usageKey struct {
	key   spotoken.ConnectionKey
	proxy bool
}

// usageState is one connection's use in windows of UsageWindow: the
// current window's count and the recent peak, which decays by half every
// UsagePeakHalfLife.
type usageState struct {
	first, window int64 // window numbers: first seen, current
	count         int
	peak          float64
}

type suspicion struct {
	key       spotoken.ConnectionKey
	at        time.Time
	consented time.Time
}

func newDetectors(t *Trail) *detectors {
	return &detectors{t: t, cfg: t.cfg.Detectors, known: make(map[string]time.Time), firstUse: make(map[string]keyUse), seen: make(map[seenKey]time.Time), usage: make(map[usageKey]*usageState),
		alerts: make(map[[2]string]int64)}
}

func (d *detectors) count(detector, app string) {
	d.mu.Lock()
	d.alerts[[2]string{detector, app}]++
	d.mu.Unlock()
}

func (d *detectors) counts() []spotoken.AnomalyCount {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sortedCounts(d.alerts)
}

// mark writes a mark unless this process wrote it within remarkEvery (and
// after notBefore), and returns the mark as it was before, or ok false when
// it was skipped.
func (d *detectors) mark(ctx context.Context, kind, app, subject string, at, notBefore time.Time) (prev spotoken.AuditMark, ok bool, err error) {
	id := kind + "\x00" + app + "\x00" + subject
	if last, seen := d.known[id]; seen && !last.Before(notBefore) && at.Sub(last) < remarkEvery && !at.Before(last) {
		return spotoken.AuditMark{}, false, nil
	}
	prev, err = d.t.store.MarkAudit(ctx, spotoken.AuditMark{Kind: kind, AppID: app, Subject: subject, LastAt: at})
	if err != nil {
		return prev, false, err
	}
	if len(d.known) >= 4*d.cfg.UsageMaxTracked {
		clear(d.known) // bounded: forgetting only costs a write
	}
	d.known[id] = at
	return prev, true, nil
}

// claim records that detector's condition holds for (app, subject) at at,
// and reports whether this is a new episode: no earlier claim, or none
// within Cooldown. Across replicas exactly one claimant of an episode wins.
func (d *detectors) claim(ctx context.Context, detector, app, subject string, at time.Time) (bool, error) {
	prev, err := d.t.store.MarkAudit(ctx, spotoken.AuditMark{Kind: markAlert + detector, AppID: app, Subject: subject, LastAt: at})
	if err != nil {
		return false, err
	}
	return prev.LastAt.IsZero() || at.Sub(prev.LastAt) >= d.cfg.Cooldown, nil
}

// fire raises an alert: an event for the app's webhook, a record in the
// trail, the metric and a log line.
func (d *detectors) fire(ctx context.Context, detector string, key spotoken.ConnectionKey, at time.Time, typ spotoken.EventType, detail map[string]string, p *Pass) error {
	d.count(detector, key.AppID)
	p.Alerts++
	data := map[string]any{"detector": detector}
	for k, v := range detail {
		data[k] = v
	}
	detail["detector"] = detector
	attrs := []any{"detector", detector, "app", key.AppID}
	if key.ID != "" {
		attrs = append(attrs, "connection", key.ID)
	}
	for k, v := range detail {
		if k != "detector" {
			attrs = append(attrs, k, v)
		}
	}
	d.t.log.Warn("audit: anomaly", attrs...)
	d.t.Record(spotoken.AuditRecord{At: at, Action: spotoken.AuditAlert, AppID: key.AppID, ConnectionID: key.ID,
		ActorType: spotoken.ActorSystem, Outcome: detector, Detail: detail})
	if err := d.t.store.AppendEvents(ctx, spotoken.NewEvent(typ, key, at, data)); err != nil {
		return fmt.Errorf("audit: %s event: %w", detector, err)
	}
	return nil
}

// records runs the streaming detectors over a written batch.
func (d *detectors) records(ctx context.Context, batch []spotoken.AuditRecord, p *Pass) error {
	var errs []error
	for i := range batch {
		r := &batch[i]
		if r.ActorType != spotoken.ActorAPIKey || r.ActorID == "" {
			continue
		}
		if err := d.network(ctx, r, p); err != nil {
			errs = append(errs, err)
		}
		// Only uses that reached a connection: an id that does not exist
		// (not_found) must not make the detector track it.
		if r.ConnectionID != "" && (r.Action == spotoken.AuditTokenVend || r.Action == spotoken.AuditProxyCall) &&
			(r.Status < 400 || r.UpstreamStatus != 0) {
			if err := d.use(ctx, r, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// networkOf is the network an address belongs to for the new-network
// detector: its /24 (IPv4, and IPv4-mapped IPv6) or /48 (IPv6).
func networkOf(addr netip.Addr) netip.Prefix { return prefixOf(addr, 24, 48) }

// prefixOf is the prefix of addr (IPv4-mapped addresses as IPv4) of v4 or
// v6 bits.
func prefixOf(addr netip.Addr, v4, v6 int) netip.Prefix {
	addr = addr.Unmap()
	bits := v6
	if addr.Is4() {
		bits = v4
	}
	p, _ := addr.Prefix(bits)
	return p
}

// network: an API key used from a network it has not used before, after
// its learning period.
func (d *detectors) network(ctx context.Context, r *spotoken.AuditRecord, p *Pass) error {
	seen := seenKey{r.AppID, r.ActorID, r.ClientIP}
	if last, ok := d.seen[seen]; ok && r.At.Sub(last) < remarkEvery && !r.At.Before(last) {
		return nil // this key from this address, checked lately
	}
	if len(d.seen) >= d.cfg.UsageMaxTracked {
		clear(d.seen)
	}
	d.seen[seen] = r.At
	addr, err := netip.ParseAddr(r.ClientIP)
	if err != nil {
		return nil // no address to judge
	}
	firstUse, err := d.keyFirstUse(ctx, r)
	if err != nil {
		return err
	}
	netw := networkOf(addr).String()
	prev, ok, err := d.mark(ctx, markNetwork, r.AppID, r.ActorID+" "+netw, r.At, time.Time{})
	if err != nil || !ok || !prev.LastAt.IsZero() {
		return err // known to this process, or to the store
	}
	// A network new to the key: is the key past its learning period?
	if r.At.Sub(firstUse) < d.cfg.NewNetworkLearning {
		return nil
	}
	win, err := d.claim(ctx, DetectNewNetwork, r.AppID, r.ActorID+" "+netw, r.At)
	if err != nil || !win {
		return err
	}
	return d.fire(ctx, DetectNewNetwork, spotoken.ConnectionKey{AppID: r.AppID}, r.At, spotoken.EventAlertNewNetwork, map[string]string{
		"api_key_id": r.ActorID, "api_key": r.ActorLabel, "network": netw, "client_ip": r.ClientIP,
		"user_agent": r.UserAgent, "first_used_at": firstUse.UTC().Format(time.RFC3339),
	}, p)
}

// keyFirstUse returns when the trail first saw the record's API key (its
// learning period starts there), keeping the mark fresh for retention.
func (d *detectors) keyFirstUse(ctx context.Context, r *spotoken.AuditRecord) (time.Time, error) {
	id := r.AppID + "\x00" + r.ActorID
	if k, ok := d.firstUse[id]; ok && r.At.Sub(k.written) < remarkEvery && !r.At.Before(k.written) {
		return k.first, nil
	}
	prev, err := d.t.store.MarkAudit(ctx, spotoken.AuditMark{Kind: markKeyFirstUse, AppID: r.AppID, Subject: r.ActorID, LastAt: r.At})
	if err != nil {
		return time.Time{}, err
	}
	first := prev.FirstAt
	if first.IsZero() || r.At.Before(first) {
		first = r.At
	}
	if len(d.firstUse) >= d.cfg.UsageMaxTracked {
		clear(d.firstUse)
	}
	d.firstUse[id] = keyUse{first: first, written: r.At}
	return first, nil
}

// use: a connection's vend or proxy count in its window against its recent
// peak.
func (d *detectors) use(ctx context.Context, r *spotoken.AuditRecord, p *Pass) error {
	k := usageKey{key: spotoken.ConnectionKey{AppID: r.AppID, ID: r.ConnectionID}, proxy: r.Action == spotoken.AuditProxyCall}
	w := r.At.UnixNano() / int64(d.cfg.UsageWindow)
	s := d.usage[k]
	if s == nil {
		if len(d.usage) >= d.cfg.UsageMaxTracked && !d.evictUsage(w) {
			return nil // full of active connections: this one goes unwatched
		}
		s = &usageState{first: w, window: w}
		d.usage[k] = s
	}
	if w > s.window { // close the window, and the idle ones after it
		decay := math.Pow(0.5, float64(d.cfg.UsageWindow)/float64(d.cfg.UsagePeakHalfLife))
		s.peak = max(s.peak*decay, float64(s.count)) * math.Pow(decay, float64(w-s.window-1))
		s.window, s.count = w, 0
	} else if w < s.window {
		return nil // a straggler from a closed window
	}
	s.count++
	limit := int(math.Ceil(max(float64(d.cfg.UsageMin), d.cfg.UsageFactor*s.peak)))
	learned := time.Duration(w-s.first)*d.cfg.UsageWindow >= d.cfg.UsageLearning
	if s.count != limit || !learned {
		return nil
	}
	what := "vend"
	if k.proxy {
		what = "proxy"
	}
	win, err := d.claim(ctx, DetectUsageSpike, k.key.AppID, k.key.ID+" "+what, r.At)
	if err != nil || !win {
		return err
	}
	return d.fire(ctx, DetectUsageSpike, k.key, r.At, spotoken.EventAlertUsageSpike, map[string]string{
		"kind": what, "count": strconv.Itoa(s.count), "window": d.cfg.UsageWindow.String(),
		"recent_peak": strconv.FormatFloat(s.peak, 'f', 1, 64), "api_key_id": r.ActorID, "client_ip": r.ClientIP,
	}, p)
}

// evictUsage makes room in the usage map by forgetting connections idle
// for a day; it reports whether there is room. It scans the map at most
// once a window (now is the window's number).
func (d *detectors) evictUsage(now int64) bool {
	if now == d.usageScanned {
		// Scanned in this window already: no entry has become a day idle
		// since. Without this, every new connection of a sweep of many
		// (all of them active) scanned the whole map: at 100,000 entries
		// about a millisecond a record, and the trail fell to a thousand
		// records a second and dropped the rest.
		return false
	}
	d.usageScanned, d.usageScans = now, d.usageScans+1
	day := int64(24 * time.Hour / d.cfg.UsageWindow)
	for k, s := range d.usage {
		if now-s.window > day {
			delete(d.usage, k)
		}
	}
	return len(d.usage) < d.cfg.UsageMaxTracked
}

// outcome records a refresh outcome: the trail's record of a needs_reauth,
// the marks the surge and reuse detectors read, and a reuse suspicion.
func (d *detectors) outcome(ctx context.Context, o outcome, p *Pass) error {
	if o.rotated {
		_, _, err := d.mark(ctx, markRotated, o.key.AppID, o.key.ID, o.at, o.consented)
		return err
	}
	expired := o.reauth == "grant_expired" || (!o.grantExpiries.IsZero() && !o.at.Before(o.grantExpiries))
	d.t.Record(spotoken.AuditRecord{At: o.at, Action: spotoken.AuditNeedsReauth, AppID: o.key.AppID, ConnectionID: o.key.ID,
		ActorType: spotoken.ActorSystem, Outcome: o.reauth, Detail: map[string]string{"reason": o.reauth}})
	if expired {
		return nil // expected, warned of in advance: neither a surge nor a reuse
	}
	if _, err := d.t.store.MarkAudit(ctx, spotoken.AuditMark{Kind: markReauth, AppID: o.key.AppID, Subject: o.key.ID, LastAt: o.at}); err != nil {
		return err
	}
	if o.reauth != "revoked" {
		return nil // rotation_lost: our own lost answer, not someone else's use
	}
	rot, err := d.t.store.AuditMark(ctx, markRotated, o.key.AppID, o.key.ID)
	if errors.Is(err, spotoken.ErrNotFound) || (err == nil && rot.LastAt.Before(o.consented)) {
		return nil // never rotated in this grant: reuse would not show as a refusal
	}
	if err != nil {
		return err
	}
	if len(d.pending) < d.cfg.UsageMaxTracked {
		d.pending = append(d.pending, suspicion{key: o.key, at: o.at, consented: o.consented})
	}
	return nil
}

// periodic runs the detectors that look at the store: the needs_reauth
// surge, then the reuse suspicions that waited out ReuseHold.
func (d *detectors) periodic(ctx context.Context, p *Pass) error {
	now := d.t.cfg.Now()
	surging, err := d.surge(ctx, now, p)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	keep := d.pending[:0]
	for _, s := range d.pending {
		if now.Sub(s.at) < d.cfg.ReuseHold {
			keep = append(keep, s)
			continue
		}
		if surging[s.key.AppID] {
			d.t.log.Info("audit: refresh-token reuse suspicion folded into the app's needs_reauth surge", "app", s.key.AppID, "connection", s.key.ID)
			continue
		}
		win, err := d.claim(ctx, DetectRefreshReuse, s.key.AppID, s.key.ID+" "+strconv.FormatInt(s.consented.UnixMicro(), 10), s.at)
		if err != nil {
			errs = append(errs, err)
			keep = append(keep, s) // try again next pass
			continue
		}
		if win {
			if err := d.fire(ctx, DetectRefreshReuse, s.key, s.at, spotoken.EventAlertRefreshReuse, map[string]string{
				"refused_at": s.at.UTC().Format(time.RFC3339), "consented_at": s.consented.UTC().Format(time.RFC3339),
			}, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.pending = keep
	return errors.Join(errs...)
}

// surge raises alert.reauth_surge for the apps many of whose connections
// moved to needs_reauth within ReauthWindow, and returns the apps whose
// surge is going on (raised now or within the window).
func (d *detectors) surge(ctx context.Context, now time.Time, p *Pass) (map[string]bool, error) {
	since := now.Add(-d.cfg.ReauthWindow)
	counts, err := d.t.store.CountAuditMarks(ctx, markReauth, since)
	if err != nil || len(counts) == 0 {
		return nil, err
	}
	conns, err := d.t.store.CountConnections(ctx)
	if err != nil {
		return nil, err
	}
	size := map[string]int{}
	for _, c := range conns {
		if c.State == spotoken.StateActive || c.State == spotoken.StateNeedsReauth {
			size[c.AppID] += c.Count
		}
	}
	surging := map[string]bool{}
	var errs []error
	for _, c := range counts {
		if c.Count < d.cfg.ReauthMin || float64(c.Count) < d.cfg.ReauthFraction*float64(size[c.AppID]) {
			if m, err := d.t.store.AuditMark(ctx, markAlert+DetectReauthSurge, c.AppID, ""); err == nil && !m.LastAt.Before(since) {
				surging[c.AppID] = true // raised within the window
			}
			continue
		}
		surging[c.AppID] = true
		win, err := d.claim(ctx, DetectReauthSurge, c.AppID, "", now)
		if err != nil || !win {
			errs = append(errs, err)
			continue
		}
		if err := d.fire(ctx, DetectReauthSurge, spotoken.ConnectionKey{AppID: c.AppID}, now, spotoken.EventAlertReauthSurge, map[string]string{
			"needs_reauth": strconv.Itoa(c.Count), "connections": strconv.Itoa(size[c.AppID]), "window": d.cfg.ReauthWindow.String(),
		}, p); err != nil {
			errs = append(errs, err)
		}
	}
	return surging, errors.Join(errs...)
}
