package audit_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
)

// TestOrdinaryWeek: a week of ordinary use raises no alert. One app, 1,000
// connections, refreshed every hour (Spotify rotating the refresh token
// each time, with reuse detection on), used by two services from their
// usual networks, day and night: service A vends every connection's token
// about once an hour from two addresses of one /24, service B calls the Web
// API through the proxy from two IPv6 addresses of one /48, and two
// connections are used heavily, from 20 to 120 vends per 5 minutes between
// night and day. On the fourth day a cohort of 50 grants reaches Spotify's
// six-month limit in the same hour (by our clock: warned of, not a surge).
//
// The broker and the emulator carry 20 of the connections for real: their
// connect flows, every hourly refresh through the scheduler and the
// emulator, and their vends and proxied calls over HTTP. The other 980 are
// stored connections whose inputs to the trail are simulated as the engine
// and the server make them (Trail.Rotated each hour, the records of their
// vends and calls): 165,000 real refreshes and 500,000 real requests take
// more than an hour under -race on the machines this runs on. Everything
// runs on the emulator's virtual clock, in steps of 5 minutes, the trail
// driven by Flush once an hour. The simulated connections' records reach
// the store's AppendAudit and are counted there but not stored (the real
// ones are): 500,000 SQLite inserts cost minutes under -race and tell the
// detectors nothing, since they read the batches in memory; the marks they
// keep are stored for real.
func TestOrdinaryWeek(t *testing.T) {
	var kept *keepReal
	w := newWorld(t, reuseDetection, audit.Detectors{}, func(c *audit.Config) {
		kept = &keepReal{Store: c.Store}
		c.Store, c.Retention = kept, 12*time.Hour
	})
	keyA, keyAID := w.addApp("shop")
	keyB, keyBID := w.addKey("shop", "service B")
	const real, total, heavy = 10, 1000, 2
	for i := range real {
		w.connect(keyA, fmt.Sprint("r", i), fmt.Sprint("user-r", i))
	}
	start := w.emu.Now()
	far := start.AddDate(100, 0, 0) // the simulated ones are never due for a real refresh
	for i := real; i < total; i++ {
		c := &spotoken.Connection{AppID: "shop", ID: fmt.Sprint("s", i), State: spotoken.StateActive,
			Token:       spotoken.Token{AccessToken: "simulated", RefreshToken: "simulated", Expiry: far},
			ConsentedAt: start.AddDate(0, -3, 0), GrantExpiresAt: start.AddDate(0, 3, 0)}
		if err := w.store.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(16, 2026))
	ipsA := []string{"192.0.2.10", "192.0.2.11"}
	ipsB := []string{"2001:db8:42:1::5", "2001:db8:42:7::9"}
	record := func(action spotoken.AuditAction, conn string, at time.Time, b bool) spotoken.AuditRecord {
		r := spotoken.AuditRecord{At: at, Action: action, AppID: "shop", ConnectionID: conn, ActorType: spotoken.ActorAPIKey,
			ActorID: keyAID, ActorLabel: "svc", ClientIP: ipsA[rng.IntN(2)], UserAgent: "svc-a/1.0", Method: "POST",
			Route: "/v1/connections/{id}/token", Status: 200, Outcome: "ok", Fingerprint: "hmac-sha256:1:0"}
		if b {
			r.ActorID, r.ClientIP, r.UserAgent, r.Method, r.Route, r.UpstreamStatus = keyBID, ipsB[rng.IntN(2)], "svc-b/2.0", "GET", "/v1/me", 200
		}
		return r
	}
	step := 5 * time.Minute
	steps := int(7 * 24 * time.Hour / step)
	maxHeavy := 0
	var written int64
	for s := range steps {
		now := w.emu.Now()
		hourStep := s % 12
		// The real connections: refreshed by the scheduler when due (it
		// runs every step), vended and called at their own minute.
		if _, err := w.sched.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range real {
			if i%12 == hourStep {
				w.vend(keyA, fmt.Sprint("r", i), ipsA[i%2])
				if r := w.call("GET", fmt.Sprintf("/v1/proxy/r%d/v1/me", i), keyB, ipsB[i%2], ""); r.Status != 200 {
					t.Fatalf("proxy r%d: %d %s", i, r.Status, r.Body)
				}
			}
		}
		// The simulated ones, this step's share of the hour.
		var batch []spotoken.AuditRecord
		for i := real; i < total; i++ {
			if i%12 != hourStep {
				continue
			}
			id := fmt.Sprint("s", i)
			at := now.Add(time.Duration(rng.Int64N(int64(step))))
			w.trail.Rotated(spotoken.ConnectionKey{AppID: "shop", ID: id}, at, start.AddDate(0, -3, 0))
			for range poisson(rng, 1) {
				batch = append(batch, record(spotoken.AuditTokenVend, id, now.Add(time.Duration(rng.Int64N(int64(step)))), false))
			}
			for range poisson(rng, 0.5) {
				batch = append(batch, record(spotoken.AuditProxyCall, id, now.Add(time.Duration(rng.Int64N(int64(step)))), true))
			}
		}
		// The heavy ones: 20 a window at night to 120 at 14:00.
		hour := float64(now.Hour()) + float64(now.Minute())/60
		mean := 70 - 50*math.Cos((hour-2)/24*2*math.Pi)
		for h := range heavy {
			n := poisson(rng, mean)
			maxHeavy = max(maxHeavy, n)
			for range n {
				batch = append(batch, record(spotoken.AuditTokenVend, fmt.Sprint("s", real+h), now.Add(time.Duration(rng.Int64N(int64(step)))), h == 1))
			}
		}
		sort.Slice(batch, func(i, j int) bool { return batch[i].At.Before(batch[j].At) })
		for _, r := range batch {
			w.trail.Record(r)
		}
		written += int64(len(batch))
		// Day 4, 10:00: 50 grants expire by our clock in one hour.
		if s == 3*288+120 {
			for i := range 50 {
				id := fmt.Sprint("s", 500+i)
				w.trail.NeedsReauth(spotoken.ConnectionKey{AppID: "shop", ID: id}, "revoked", now.Add(time.Duration(i)*time.Minute),
					start.AddDate(0, -6, 0), now.Add(time.Duration(i)*time.Minute))
			}
		}
		if hourStep != 11 {
			w.emu.Advance(step)
			continue
		}
		w.flush()
		if got := w.anomalies(); len(got) > 0 {
			t.Fatalf("day %d %s: anomalies %v; events %v", s/288+1, now.Format("15:04"), got, w.alertEvents())
		}
		w.emu.Advance(step)
	}
	w.wantAnomalies(nil)

	// The week really happened: every real connection refreshed every
	// hour (and rotated), the simulated records were written, and the
	// heavy connections went past the usage detector's minimum.
	st := w.engine.Stats()
	if st.Rotations < int64(real*(7*24-1)) {
		t.Errorf("%d rotations of the real connections, want at least %d", st.Rotations, real*(7*24-1))
	}
	if ts := w.trail.Stats(); ts.Written < written || ts.DroppedQueueFull+ts.DroppedWriteFailed != 0 || kept.simulated.Load() < written {
		t.Errorf("trail: %+v, %d simulated records passed to the store; %d records simulated", ts, kept.simulated.Load(), written)
	}
	if recs, err := w.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "shop", ConnectionID: "r3", Since: w.emu.Now().Add(-time.Hour)}); err != nil || len(recs) < 2 {
		t.Errorf("the last hour of r3's records: %d, %v", len(recs), err)
	}
	if maxHeavy < 100 {
		t.Errorf("the heavy connections peaked at %d per window: the usage detector was never at its threshold", maxHeavy)
	}
	t.Logf("%d simulated records, %d rotations, heavy peak %d a window", written, st.Rotations, maxHeavy)
}

// poisson draws from a Poisson distribution of mean m (Knuth for small
// means, a rounded normal for large ones).
func poisson(rng *rand.Rand, m float64) int {
	if m > 30 {
		return max(0, int(math.Round(m+math.Sqrt(m)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-m), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// keepReal is the trail's store for the week: it stores the records of the
// real connections (ids r…) and the rest of the audit methods as they are,
// and counts the simulated connections' records without storing them.
type keepReal struct {
	audit.Store
	simulated atomic.Int64
}

func (s *keepReal) AppendAudit(c context.Context, records ...spotoken.AuditRecord) error {
	kept := records[:0:0]
	for _, r := range records {
		if strings.HasPrefix(r.ConnectionID, "s") {
			s.simulated.Add(1)
		} else {
			kept = append(kept, r)
		}
	}
	return s.Store.AppendAudit(c, kept...)
}
