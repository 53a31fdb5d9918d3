package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotoken/spotoken"
)

// Store is what the trail needs of a store.
type Store interface {
	spotoken.AuditStore
	AppendEvents(ctx context.Context, events ...spotoken.Event) error
	CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error)
}

var _ Store = spotoken.Store(nil)

// Defaults of Config.
const (
	DefaultQueueSize     = 1 << 16
	DefaultBatchSize     = 1000
	DefaultFlushInterval = time.Second
	DefaultRetention     = 30 * 24 * time.Hour
	retentionEvery       = time.Hour
	retentionChunk       = 10000
)

// Config configures a Trail. Store is required.
type Config struct {
	Store Store
	// Now is the clock; default time.Now. Give it the server's clock.
	Now func() time.Time
	// Logger gets a line per alert and per failed batch; never a secret.
	// Default: discard.
	Logger *slog.Logger
	// Fingerprints fingerprints the secrets records mention; nil leaves
	// records without fingerprints.
	Fingerprints *Fingerprinter
	// QueueSize bounds the records waiting to be written; past it records
	// are dropped (and counted), never waited for. Default 65536.
	QueueSize int
	// BatchSize is how many records one transaction writes. Default 1000.
	BatchSize int
	// FlushInterval is how often Run writes what is queued. Default 1s.
	FlushInterval time.Duration
	// Retention is how long records are kept; negative keeps them for
	// ever. Default 30 days.
	Retention time.Duration
	// Detectors sets the detectors' thresholds.
	Detectors Detectors
}

// Trail is the audit trail: it takes records without blocking, writes them
// in batches, keeps them for the retention period, and runs the detectors
// over them. It is safe for concurrent use. Run it with Run, or drive it
// with RunOnce and Flush in tests.
//
// What is lost on a crash: the records queued and not yet written, at most
// FlushInterval's worth (plus whatever a slow database let pile up, up to
// QueueSize); a graceful shutdown (Run returning when its context ends)
// writes them. Lifecycle changes are not at risk: their records are written
// in the change's own transaction (spotoken.WithAudit).
//
// Taking a record costs a request little: it is copied into one of
// several queues (each with its own lock, so concurrent requests rarely
// wait for one another), and all the rest (the fingerprint of the secret
// it names, the encoding, the write) is done by the writer, in batches.
type Trail struct {
	cfg   Config
	log   *slog.Logger
	store Store

	shards [queueShards]shard
	// seq numbers the records taken, in order; drained counts those
	// handed to the writer or dropped, so seq-drained are queued.
	seq, drained atomic.Uint64

	mu       sync.Mutex
	outcomes []outcome
	batch    []spotoken.AuditRecord // the writer's, reused: the shards' records of a pass
	fps      map[spotoken.Secret]string

	flushMu   sync.Mutex // one flush at a time
	lastSweep time.Time

	written, droppedFull, droppedWrite atomic.Int64

	detect *detectors
	guard  *authGuard
}

// queueShards is how many queues Record spreads its callers over.
const queueShards = 16

// shard is one of the queues: the records taken and, for each, the secret
// whose fingerprint it is to carry ("" for none), fingerprinted by the
// writer, and its place in the order records were taken (the writer
// merges the shards back into that order). The spare slices are the ones
// last written, reused.
type shard struct {
	mu                    sync.Mutex
	recs, spare           []spotoken.AuditRecord
	secrets, spareSecrets []spotoken.Secret
	seqs, spareSeqs       []uint64
	_                     [64]byte // apart from the next shard's lock
}

// outcome is a refresh outcome reported by the engine.
type outcome struct {
	key                      spotoken.ConnectionKey
	at                       time.Time
	rotated                  bool
	reauth                   string
	consented, grantExpiries time.Time
}

// New returns a trail for cfg.
func New(cfg Config) (*Trail, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Config needs a Store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	cfg.Detectors.defaults()
	t := &Trail{cfg: cfg, log: cfg.Logger, store: cfg.Store, fps: make(map[spotoken.Secret]string)}
	t.detect = newDetectors(t)
	t.guard = newAuthGuard(cfg.Detectors)
	return t, nil
}

// Record takes one record for the trail. It never blocks: when the queue is
// full the record is dropped and counted (the trail fails open, so that a
// stalled database cannot stop token vending). A record of refused
// credentials also counts towards its address's failed-authentication limit.
func (t *Trail) Record(rec spotoken.AuditRecord) { t.RecordSecret(rec, "") }

// RecordSecret is Record for a record whose Fingerprint is to be secret's
// (the access token a vend handed out): the writer fingerprints it, off
// the request's path. The secret is held in memory until then, never
// written.
func (t *Trail) RecordSecret(rec spotoken.AuditRecord, secret spotoken.Secret) {
	if rec.Version == 0 {
		rec.Version = spotoken.AuditVersion
	}
	if rec.At.IsZero() {
		rec.At = t.cfg.Now()
	}
	if rec.Action == spotoken.AuditAuthFailed {
		if addr, err := netip.ParseAddr(rec.ClientIP); err == nil {
			if limited := t.guard.failed(addr, rec.At); limited {
				t.limited(rec, addr)
			}
		}
	}
	if !t.enqueue(rec, secret, false) {
		t.droppedFull.Add(1)
	}
}

// enqueue puts rec in a shard, unless QueueSize records are queued already
// (and !force); it reports whether it did.
func (t *Trail) enqueue(rec spotoken.AuditRecord, secret spotoken.Secret, force bool) bool {
	sh := &t.shards[rand.Uint32()%queueShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	seq := t.seq.Add(1)
	if !force && seq-t.drained.Load() > uint64(t.cfg.QueueSize) {
		t.drained.Add(1)
		return false
	}
	sh.recs = append(sh.recs, rec)
	sh.secrets = append(sh.secrets, secret)
	sh.seqs = append(sh.seqs, seq)
	return true
}

// limited records that addr was put under the failed-authentication limit.
func (t *Trail) limited(failed spotoken.AuditRecord, addr netip.Addr) {
	t.detect.count("auth_limited", "")
	t.log.Warn("audit: failed authentication limit reached; the address is refused for a while",
		"client_ip", addr.String(), "failures", t.cfg.Detectors.AuthFailures, "block", t.cfg.Detectors.AuthBlock)
	rec := spotoken.AuditRecord{
		Version: spotoken.AuditVersion, At: failed.At, Action: spotoken.AuditAuthLimited, ActorType: spotoken.ActorAnonymous,
		ClientIP: failed.ClientIP, UserAgent: failed.UserAgent, RequestID: failed.RequestID, Method: failed.Method, Route: failed.Route,
		Status: 429, Outcome: "rate_limited",
		Detail: map[string]string{"detector": "auth_limited", "failures": fmt.Sprint(t.cfg.Detectors.AuthFailures),
			"blocked_for": t.cfg.Detectors.AuthBlock.String()},
	}
	t.enqueue(rec, "", true) // past QueueSize if need be: it is one per episode
}

// AuthWait reports whether a request from addr may try to authenticate:
// zero, or how long the address must wait (it failed too often).
func (t *Trail) AuthWait(addr netip.Addr) time.Duration {
	if t.guard.blocked.Load() == 0 {
		return 0 // no address is limited: no clock, no lock
	}
	return t.guard.wait(addr, t.cfg.Now())
}

// Fingerprint returns s's fingerprint, or "" without a fingerprinter.
func (t *Trail) Fingerprint(s spotoken.Secret) string { return t.cfg.Fingerprints.Fingerprint(s) }

// take moves every shard's records into t.batch, in the order they were
// taken, the secrets they name fingerprinted, and returns it. It runs on
// the writer (under flushMu).
func (t *Trail) take() []spotoken.AuditRecord {
	var taken [queueShards]struct {
		recs    []spotoken.AuditRecord
		secrets []spotoken.Secret
		seqs    []uint64
	}
	for i := range t.shards {
		sh, x := &t.shards[i], &taken[i]
		sh.mu.Lock()
		x.recs, x.secrets, x.seqs = sh.recs, sh.secrets, sh.seqs
		sh.recs, sh.secrets, sh.seqs = sh.spare[:0], sh.spareSecrets[:0], sh.spareSeqs[:0]
		sh.spare, sh.spareSecrets, sh.spareSeqs = nil, nil, nil
		sh.mu.Unlock()
		t.drained.Add(uint64(len(x.seqs)))
	}
	// Each shard is in order: merge them, fingerprinting on the way.
	batch := t.batch[:0]
	var heads [queueShards]int
	for {
		best := -1
		for i := range taken {
			if h := heads[i]; h < len(taken[i].seqs) && (best < 0 || taken[i].seqs[h] < taken[best].seqs[heads[best]]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		x, h := &taken[best], heads[best]
		heads[best]++
		batch = append(batch, x.recs[h])
		if s := x.secrets[h]; s != "" {
			fp, ok := t.fps[s]
			if !ok {
				fp = t.cfg.Fingerprints.Fingerprint(s)
				t.fps[s] = fp
			}
			batch[len(batch)-1].Fingerprint = fp
		}
	}
	clear(t.fps) // no secret kept past the pass
	for i := range t.shards {
		sh, x := &t.shards[i], &taken[i]
		clear(x.recs) // no references kept
		clear(x.secrets)
		sh.mu.Lock()
		if cap(x.recs) <= 2*t.cfg.QueueSize/queueShards {
			sh.spare, sh.spareSecrets, sh.spareSeqs = x.recs[:0], x.secrets[:0], x.seqs[:0]
		}
		sh.mu.Unlock()
	}
	return batch
}

// Records lists stored records (queued ones are not seen until written).
func (t *Trail) Records(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error) {
	return t.store.AuditRecords(ctx, filter)
}

// Rotated tells the trail that Spotify rotated key's refresh token at at,
// in a grant consented at consented. It never blocks.
func (t *Trail) Rotated(key spotoken.ConnectionKey, at, consented time.Time) {
	t.addOutcome(outcome{key: key, at: at, rotated: true, consented: consented})
}

// NeedsReauth tells the trail that Spotify refused key's refresh token at at
// and the connection moved to needs_reauth for reason (revoked,
// grant_expired, rotation_lost); consented and grantExpires are the grant's
// consent and expiry. It never blocks.
func (t *Trail) NeedsReauth(key spotoken.ConnectionKey, reason string, at, consented, grantExpires time.Time) {
	t.addOutcome(outcome{key: key, at: at, reauth: reason, consented: consented, grantExpiries: grantExpires})
}

func (t *Trail) addOutcome(o outcome) {
	if o.at.IsZero() {
		o.at = t.cfg.Now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.outcomes) >= t.cfg.QueueSize {
		t.droppedFull.Add(1)
		return
	}
	t.outcomes = append(t.outcomes, o)
}

// Pass is what one RunOnce did.
type Pass struct {
	Written, Dropped int // records written, and lost to a failed write
	Alerts           int // detector alerts raised
	Deleted          int // records deleted by retention
}

// Flush writes every queued record now and runs the detectors over them.
func (t *Trail) Flush(ctx context.Context) error {
	_, err := t.RunOnce(ctx)
	return err
}

// RunOnce writes the queued records in batches, runs the detectors (those
// that read the records as they are written, and those that look at the
// store: the needs_reauth surge and pending reuse suspicions), and, once an
// hour, deletes records older than the retention period.
func (t *Trail) RunOnce(ctx context.Context) (Pass, error) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	var p Pass
	var errs []error
	t.mu.Lock()
	outcomes := t.outcomes
	t.outcomes = nil
	t.mu.Unlock()
	for _, o := range outcomes {
		if err := t.detect.outcome(ctx, o, &p); err != nil {
			errs = append(errs, err)
		}
	}
	queued := t.take()
	defer func(q []spotoken.AuditRecord) {
		clear(q) // no references kept
		if cap(q) <= 2*t.cfg.QueueSize {
			t.batch = q[:0]
		} else {
			t.batch = nil
		}
	}(queued)
	for len(queued) > 0 {
		n := min(len(queued), t.cfg.BatchSize)
		batch := queued[:n]
		queued = queued[n:]
		if err := t.store.AppendAudit(ctx, batch...); err != nil {
			t.droppedWrite.Add(int64(n))
			p.Dropped += n
			t.log.Error("audit: writing records failed; they are lost", "records", n, "err", err)
			errs = append(errs, err)
		} else {
			t.written.Add(int64(n))
			p.Written += n
		}
		if err := t.detect.records(ctx, batch, &p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.detect.periodic(ctx, &p); err != nil {
		errs = append(errs, err)
	}
	now := t.cfg.Now()
	if t.cfg.Retention > 0 && (t.lastSweep.IsZero() || now.Sub(t.lastSweep) >= retentionEvery || now.Before(t.lastSweep)) {
		t.lastSweep = now
		for range 10 {
			n, err := t.store.DeleteAuditBefore(ctx, now.Add(-t.cfg.Retention), retentionChunk)
			p.Deleted += n
			if err != nil {
				errs = append(errs, err)
			}
			if err != nil || n < retentionChunk {
				break
			}
		}
	}
	return p, errors.Join(errs...)
}

// Run writes queued records every FlushInterval until ctx is done, then
// writes what is left (with a few seconds' grace) and returns.
func (t *Trail) Run(ctx context.Context) error {
	tick := time.NewTicker(t.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := t.RunOnce(fctx); err != nil {
				t.log.Warn("audit: final flush", "err", err)
			}
			return nil
		case <-tick.C:
		}
		// A pass outlives a shutdown that begins during it: cancelling
		// its write would lose the records it took from the queue.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if _, err := t.RunOnce(pctx); err != nil {
			t.log.Warn("audit: pass", "err", err)
		}
		cancel()
	}
}

// Stats returns the trail's counters.
func (t *Trail) Stats() spotoken.AuditStats {
	queued := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		queued += len(sh.recs)
		sh.mu.Unlock()
	}
	s := spotoken.AuditStats{
		Written: t.written.Load(), DroppedQueueFull: t.droppedFull.Load(), DroppedWriteFailed: t.droppedWrite.Load(),
		Queued: queued, Anomalies: t.detect.counts(),
	}
	s.AuthFailures, s.AuthLimited, s.LimitedAddresses, s.TrackedAddresses = t.guard.stats(t.cfg.Now())
	return s
}

// sortedCounts returns m's counts ordered by detector and app.
func sortedCounts(m map[[2]string]int64) []spotoken.AnomalyCount {
	out := make([]spotoken.AnomalyCount, 0, len(m))
	for k, n := range m {
		out = append(out, spotoken.AnomalyCount{Detector: k[0], AppID: k[1], Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Detector != out[j].Detector {
			return out[i].Detector < out[j].Detector
		}
		return out[i].AppID < out[j].AppID
	})
	return out
}
