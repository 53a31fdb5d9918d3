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
	"unsafe"

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
	DefaultQueueBytes    = 16 << 20
	DefaultBatchSize     = 1000
	DefaultFlushInterval = time.Second
	DefaultRetention     = 30 * 24 * time.Hour
	retentionEvery       = time.Hour
	retentionChunk       = 10000
	// maxBackoff bounds the wait between attempts at a batch that failed
	// for a reason that may pass (the database busy or slow).
	maxBackoff = 15 * time.Second
	// finalFlush bounds Run's last flush when nobody called Close.
	finalFlush = 5 * time.Second
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
	// QueueSize bounds the records waiting to be written (queued, or
	// taken and waiting to be retried); past it records are dropped (and
	// counted), never waited for. Default 65536.
	QueueSize int
	// QueueBytes bounds the memory those records hold: an estimate of
	// each record's share of the queue's arrays and of the strings it
	// holds (the access token a vend's record is to be fingerprinted from
	// included). Past it records are dropped and counted, as past
	// QueueSize. Default 16 MiB (about 10,000 to 12,000 vend records).
	QueueBytes int64
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
// QueueSize and QueueBytes); a graceful shutdown (Close, or Run returning
// when its context ends) writes them, within its deadline. Lifecycle
// changes are not at risk: their records are written in the change's own
// transaction (spotoken.WithAudit).
//
// A batch the store refuses for a reason that may pass (a deadline, the
// database busy, unreachable or away) is kept and tried again, after a
// backoff, with the records taken since: records are lost only when the
// queue is full (QueueSize, QueueBytes), when the store refuses a batch as
// invalid, or at shutdown when Close's deadline passes. A batch whose
// commit's answer was lost may be written twice.
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
	// seq numbers the records taken, in order.
	seq atomic.Uint64
	// queued and queuedBytes count the records taken and not yet written
	// or dropped (in the shards and in pending), and their recBytes.
	queued, queuedBytes atomic.Int64
	// closed: Close has given up on the records left; no more are taken.
	// Set under every shard's lock.
	closed atomic.Bool

	mu       sync.Mutex
	outcomes []outcome
	fps      map[spotoken.Secret]string

	flushMu   sync.Mutex // one flush at a time; guards the fields below
	lastSweep time.Time
	// pending holds the records taken from the shards, fingerprinted, in
	// order, not yet written: a batch that failed for a reason that may
	// pass waits here for the next pass.
	pending  []spotoken.AuditRecord
	failures int // passes in a row that left records in pending

	// wake asks Run for a pass before its timer: the queue is half
	// full (see enqueue). Due exposes it.
	wake chan struct{}

	// stop ends the writes of Run's passes: cancelled when Close's
	// deadline passes.
	stop       context.Context
	cancelStop context.CancelFunc

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
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
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
	t := &Trail{cfg: cfg, log: cfg.Logger, store: cfg.Store, fps: make(map[spotoken.Secret]string), wake: make(chan struct{}, 1)}
	t.stop, t.cancelStop = context.WithCancel(context.Background())
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
	t.enqueue(rec, secret, false)
}

// recOverhead is what a queued record costs besides its strings: its
// place in a shard's arrays and in pending, each up to twice its size
// while they grow, and its secret's and sequence number's places.
const recOverhead = 4*int64(unsafe.Sizeof(spotoken.AuditRecord{})) + 2*int64(unsafe.Sizeof(spotoken.Secret(""))) + 16

// recBytes estimates the memory a queued record holds (QueueBytes).
func recBytes(r *spotoken.AuditRecord) int64 {
	n := recOverhead + int64(len(r.Action)+len(r.AppID)+len(r.ConnectionID)+len(r.ActorType)+len(r.ActorID)+len(r.ActorLabel)+
		len(r.ClientIP)+len(r.UserAgent)+len(r.RequestID)+len(r.Method)+len(r.Route)+len(r.Outcome)+len(r.Fingerprint))
	for k, v := range r.Detail {
		n += int64(len(k)+len(v)) + 48
	}
	return n
}

// enqueue puts rec in a shard, unless the queue is full (QueueSize,
// QueueBytes; force ignores them) or the trail closed; it reports
// whether it did, and counts the record dropped if not.
func (t *Trail) enqueue(rec spotoken.AuditRecord, secret spotoken.Secret, force bool) bool {
	size := recBytes(&rec) + int64(len(secret))
	n, b := t.queued.Add(1), t.queuedBytes.Add(size)
	if !force && (n > int64(t.cfg.QueueSize) || b > t.cfg.QueueBytes) {
		t.queued.Add(-1)
		t.queuedBytes.Add(-size)
		t.droppedFull.Add(1)
		return false
	}
	sh := &t.shards[rand.Uint32()%queueShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if t.closed.Load() {
		t.queued.Add(-1)
		t.queuedBytes.Add(-size)
		t.droppedWrite.Add(1) // taken after the final flush gave up: not written
		return false
	}
	sh.recs = append(sh.recs, rec)
	sh.secrets = append(sh.secrets, secret)
	sh.seqs = append(sh.seqs, t.seq.Add(1))
	if n == int64(t.cfg.QueueSize)/2 || b >= t.cfg.QueueBytes/2 && b-size < t.cfg.QueueBytes/2 {
		// Half full: at a high rate, a flush interval's records would
		// not fit in the queue. Ask Run for a pass now.
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// release forgets records written or dropped from the queue's counts.
func (t *Trail) release(records []spotoken.AuditRecord) {
	var b int64
	for i := range records {
		b += recBytes(&records[i])
	}
	t.queued.Add(-int64(len(records)))
	t.queuedBytes.Add(-b)
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

// take moves every shard's records to the end of t.pending, in the order
// they were taken, the secrets they name fingerprinted. It runs on the
// writer (under flushMu).
func (t *Trail) take() {
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
	}
	// Each shard is in order: merge them, fingerprinting on the way.
	batch := t.pending
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
			r := &batch[len(batch)-1]
			// The secret forgotten, its fingerprint kept.
			t.queuedBytes.Add(int64(len(fp)) - int64(len(s)) - int64(len(r.Fingerprint)))
			r.Fingerprint = fp
		}
	}
	t.pending = batch
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
	Written, Dropped int // records written, and lost to a write the store refused as invalid
	// Retained is how many records wait for the next pass: a batch failed
	// for a reason that may pass (a deadline, the database busy or away).
	Retained int
	Alerts   int // detector alerts raised
	Deleted  int // records deleted by retention
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
	start := len(t.pending)
	t.take()
	// The detectors look at each record once, when it is taken: a batch
	// retried later is not counted again.
	for fresh := t.pending[start:]; len(fresh) > 0; {
		n := min(len(fresh), t.cfg.BatchSize)
		if err := t.detect.records(ctx, fresh[:n], &p); err != nil {
			errs = append(errs, err)
		}
		fresh = fresh[n:]
	}
	clusterByConnection(t.pending[start:])
	if err := t.write(ctx, &p); err != nil {
		errs = append(errs, err)
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

// write writes t.pending in batches, oldest first. A batch the store
// refuses as invalid is dropped (counted and logged); one that fails for
// any other reason stays, with those after it, for the next pass.
func (t *Trail) write(ctx context.Context, p *Pass) error {
	var errs []error
	done := 0
	for done < len(t.pending) {
		n := min(len(t.pending)-done, t.cfg.BatchSize)
		batch := t.pending[done : done+n]
		err := t.store.AppendAudit(ctx, batch...)
		switch {
		case err == nil:
			t.written.Add(int64(n))
			p.Written += n
		case permanent(err):
			t.droppedWrite.Add(int64(n))
			p.Dropped += n
			t.log.Error("audit: the store refused records; they are lost", "records", n, "err", err)
			errs = append(errs, err)
		default:
			p.Retained = len(t.pending) - done
			t.log.Warn("audit: writing records failed; they are kept and tried again", "records", p.Retained, "err", err)
			errs = append(errs, err)
		}
		if err != nil && !permanent(err) {
			break
		}
		t.release(batch)
		clear(batch) // no references kept
		done += n
	}
	rest := copy(t.pending, t.pending[done:])
	clear(t.pending[rest:])
	t.pending = t.pending[:rest]
	if rest == 0 {
		t.failures = 0
		if cap(t.pending) > 2*t.cfg.QueueSize {
			t.pending = nil
		}
	} else {
		t.failures++
	}
	return errors.Join(errs...)
}

// clusterByConnection reorders recs (in place) so that each connection's
// records are together, the connections in the order of their first
// record and each one's records in the order they came. A batch then
// holds a few connections' runs of records rather than a record of each
// of many, which a store can keep far more cheaply (SQLite writes a row
// per run: sqlite/auditgroups.go); listings order records by their time,
// not by the batch they came in.
func clusterByConnection(recs []spotoken.AuditRecord) {
	if len(recs) < 3 {
		return
	}
	type key struct{ app, conn string }
	type run struct{ n, at int } // records, and where they go
	runs := make(map[key]*run)
	var order []*run
	for i := range recs {
		k := key{recs[i].AppID, recs[i].ConnectionID}
		r := runs[k]
		if r == nil {
			r = &run{}
			runs[k] = r
			order = append(order, r)
		}
		r.n++
	}
	if len(order) == 1 || len(order) == len(recs) {
		return // nothing to gather
	}
	at := 0
	for _, r := range order {
		r.at, at = at, at+r.n
	}
	dest := make([]int, len(recs)) // where recs[i] goes
	for i := range recs {
		r := runs[key{recs[i].AppID, recs[i].ConnectionID}]
		dest[i], r.at = r.at, r.at+1
	}
	// Follow each cycle of the permutation, a swap a step.
	for i := range recs {
		for dest[i] != i {
			j := dest[i]
			recs[i], recs[j] = recs[j], recs[i]
			dest[i], dest[j] = dest[j], dest[i]
		}
	}
}

// permanent reports whether a store's error refuses a batch for good (an
// invalid record, a conflict): trying it again would fail again.
func permanent(err error) bool {
	switch spotoken.ErrorCode(err) {
	case spotoken.EInvalid, spotoken.EConflict:
		return true
	}
	return false
}

// backoff is how long Run waits before its next pass: FlushInterval, or
// longer (doubling, up to maxBackoff) after passes that left records.
func (t *Trail) backoff() time.Duration {
	t.flushMu.Lock()
	f := t.failures
	t.flushMu.Unlock()
	d := t.cfg.FlushInterval
	for ; f > 1 && d < maxBackoff; f-- {
		d *= 2
	}
	return min(d, max(maxBackoff, t.cfg.FlushInterval))
}

// Due is signalled (a channel buffered for one) when the queue reaches
// half of QueueSize or QueueBytes, at a high rate sooner than a
// FlushInterval: Run then passes at once. A caller that drives the trail
// with RunOnce rather than Run can wait on it the same way; with Run
// running, Run takes the signal.
func (t *Trail) Due() <-chan struct{} { return t.wake }

// Run writes queued records every FlushInterval (longer while the store
// fails), and at once when the queue holds half of QueueSize or
// QueueBytes (unless the store is failing), until ctx is done. Then, unless Close was called, it writes what
// is left as Close does, for up to 5 seconds, and returns. A pass in
// flight when ctx ends runs on (cancelling its write would lose nothing,
// but would waste it) until Close's deadline.
func (t *Trail) Run(ctx context.Context) error {
	timer := time.NewTimer(t.cfg.FlushInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if !t.closed.Load() {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlush)
				defer cancel()
				if err := t.Close(fctx); err != nil {
					t.log.Warn("audit: final flush", "err", err)
				}
			}
			return nil
		case <-timer.C:
		case <-t.wake:
			if t.backoff() > t.cfg.FlushInterval {
				continue // the store is failing: its backoff stands
			}
			timer.Stop() // Reset below; no stale tick is left (Go 1.23 timers)
		}
		if t.closed.Load() {
			return nil
		}
		pctx, cancel := context.WithTimeout(t.stop, 30*time.Second)
		if _, err := t.RunOnce(pctx); err != nil {
			t.log.Warn("audit: pass", "err", err)
		}
		cancel()
		timer.Reset(t.backoff())
	}
}

// Close writes every record queued, trying failed batches again (with
// backoff) until they are written or ctx ends, and stops taking records:
// those that arrive later, and those it could not write by ctx's end,
// are counted as dropped (write failed) and logged. Run's pass in flight
// is bounded by ctx too, and Run returns without a flush of its own after
// Close. Give it what is left of the shutdown's deadline; it returns by
// then (after the store call in flight, which ctx ends).
func (t *Trail) Close(ctx context.Context) error {
	defer context.AfterFunc(ctx, t.cancelStop)()
	var err error
	for {
		var p Pass
		p, err = t.RunOnce(ctx)
		if t.queued.Load() == 0 || ctx.Err() != nil {
			break
		}
		if p.Retained == 0 && p.Written > 0 {
			continue // records taken meanwhile
		}
		wait := time.NewTimer(t.backoff())
		select {
		case <-ctx.Done():
		case <-wait.C:
		}
		wait.Stop()
	}
	// No more records: what is left is lost.
	for i := range t.shards {
		t.shards[i].mu.Lock()
	}
	t.closed.Store(true)
	for i := range t.shards {
		t.shards[i].mu.Unlock()
	}
	t.cancelStop()
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.take()
	if lost := len(t.pending); lost > 0 {
		t.droppedWrite.Add(int64(lost))
		t.release(t.pending)
		clear(t.pending)
		t.pending = t.pending[:0]
		t.log.Error("audit: shutting down with records not written; they are lost", "records", lost, "err", err)
		return fmt.Errorf("audit: %d records not written at shutdown: %w", lost, errors.Join(err, ctx.Err()))
	}
	return nil
}

// Stats returns the trail's counters.
func (t *Trail) Stats() spotoken.AuditStats {
	s := spotoken.AuditStats{
		Written: t.written.Load(), DroppedQueueFull: t.droppedFull.Load(), DroppedWriteFailed: t.droppedWrite.Load(),
		Queued: int(max(t.queued.Load(), 0)), Anomalies: t.detect.counts(),
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
