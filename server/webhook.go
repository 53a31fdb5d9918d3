package server

// Webhooks: the outbox's events POSTed to each app's WebhookURL, signed as
// the Standard Webhooks spec (https://www.standardwebhooks.com/) says, at
// least once, with retries. docs/webhooks.md is the receivers' side.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spotoken/spotoken"
)

// WebhookStore is what the deliverer needs of a store: a spotoken.Store
// has it all.
type WebhookStore interface {
	App(ctx context.Context, id string) (*spotoken.App, error)
	PendingEvents(ctx context.Context, now time.Time, limit int) ([]*spotoken.Event, error)
	MarkEventDelivered(ctx context.Context, id int64, at time.Time) error
	MarkEventFailed(ctx context.Context, id int64, next time.Time, lastError string) error
}

var _ WebhookStore = spotoken.Store(nil)

// Defaults of the Webhooks settings.
const (
	DefaultWebhookInterval    = time.Second
	DefaultWebhookBatch       = 100
	DefaultWebhookConcurrency = 8
	DefaultWebhookMinBackoff  = 5 * time.Second
	DefaultWebhookMaxBackoff  = time.Hour
	DefaultWebhookMaxAttempts = 20
	// DefaultWebhookTimeout bounds one delivery: connecting, sending, and
	// waiting for the response's status line and headers.
	DefaultWebhookTimeout = 10 * time.Second
	// DefaultWebhookTolerance is how far a delivery's webhook-timestamp may
	// be from the receiver's clock.
	DefaultWebhookTolerance = 5 * time.Minute
)

// webhookGaveUp is the NextAttemptAt of an event the deliverer gave up on:
// it stays in the outbox, undelivered, for the record, and is never due.
var webhookGaveUp = spotoken.EventGaveUpAt

const (
	webhookUserAgent = "spotoken-webhooks/1"
	// maxWebhookResponse is how much of a receiver's response body is read
	// (and discarded) so the connection can be reused.
	maxWebhookResponse = 64 << 10
)

// Webhooks delivers the outbox's events (spotoken.EventStore) to each app's
// WebhookURL. Run it in the background, in one or more replicas; its only
// state is the outbox, so it picks up after a restart where it left off.
//
// A delivery is a POST of
//
//	{"type": "connection.created", "timestamp": "<when the event happened>", "data": {...}}
//
// with the Standard Webhooks headers webhook-id ("evt_" and the event's id,
// the same on every attempt), webhook-timestamp (the attempt's Unix time) and
// webhook-signature ("v1," and the base64 of the HMAC-SHA256 of
// "{id}.{timestamp}.{body}" keyed with the app's WebhookSecret, and while a
// rotation is under way a second one, space-separated, keyed with its
// PreviousWebhookSecret); see SignWebhook and VerifyWebhook.
//
// Any 2xx answer is a success. Anything else is a failure: another status
// (a redirect, which is never followed, and 410 Gone too), a timeout, a
// refused connection. A failed event is tried again after an exponential
// backoff with jitter (Retry-After, when the receiver sends one, is honoured
// up to MaxBackoff) and given up after MaxAttempts: it then stays in the
// outbox, undelivered, with NextAttemptAt 9999-01-01 and LastError "gave up
// after N attempts: ...". Delivery is at least once: an event whose success
// was not recorded (a crash, a shutdown mid-request, several replicas) is
// sent again under the same webhook-id.
//
// Events of an app without a WebhookURL, or of a deleted app, are marked
// delivered without being sent (outcome "skipped"), so the outbox does not
// grow. An app with a WebhookURL but no WebhookSecret gets nothing: its
// events fail with "app has no webhook secret" (and back off) until an
// operator gives it one (admin.Service.UpdateApp makes them due at once);
// spotoken never sends an unsigned delivery. An operator can make any
// event due again (spotoken.EventLog), a given-up one included.
//
// Order: an app's events are sent one at a time, oldest first. When one
// fails, the app's later events are held back behind it: they are not sent
// before it is delivered or given up. Each hold is recorded on the held
// event as a failed attempt (LastError "held back behind evt_N", retried
// when evt_N is), so Attempts counts the rounds an event waited through as
// well as the requests it was sent in, and an event that waited behind a
// failing one through MaxAttempts rounds is given up after its own first
// failed request. Holds are worked out from the outbox in windows of Batch
// events, so after a restart, or with a very long backlog, an event can
// still overtake an earlier one that waits for its retry. Apps are
// independent: one app's failing endpoint does not delay another's events.
//
// Nothing secret is logged: not the webhook secret, not a signature, not a
// response body, and of the URL only the host and path.
//
// Set the fields before the first Run or RunOnce and do not change them
// afterwards. A Webhooks is safe for concurrent use, though one Run at a
// time is the intended use.
type Webhooks struct {
	// Store is the outbox and the apps. Required.
	Store WebhookStore
	// Client sends the deliveries; default a client with a 10s timeout.
	// Redirects are never followed, whatever the client's CheckRedirect: a
	// 3xx answer is a failed delivery (update the webhook URL instead).
	Client *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger gets a line per failed delivery; default: discard.
	Logger *slog.Logger
	// Metrics, when set, counts deliveries by outcome: delivered, failed,
	// gave_up, skipped.
	Metrics *Metrics
	// Interval is how often Run looks for due events; default 1s.
	Interval time.Duration
	// Batch is how many due events a pass takes; default 100.
	Batch int
	// Concurrency is how many apps are delivered to at once; default 8.
	// One app's events are always sent one at a time.
	Concurrency int
	// MinBackoff and MaxBackoff bound the wait before a failed event's next
	// attempt: after attempt n it is drawn at random (Jitter) up to
	// min(MaxBackoff, MinBackoff·2^(n-1)), and is at least MinBackoff.
	// Defaults 5s and 1h.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts is how many attempts an event gets before it is given
	// up; default 20.
	MaxAttempts int
	// ConnectLink, when set, mints the connect link that
	// connection.expiring and connection.needs_reauth deliveries carry
	// (data.connect_url and data.connect_url_expires_at): Server.ConnectLink.
	// Each attempt gets a fresh link, so none is stored in plaintext.
	ConnectLink func(ctx context.Context, key spotoken.ConnectionKey) (ConnectSession, error)
	// Jitter returns a random number in [0, 1); default math/rand/v2's
	// Float64. Tests make backoff deterministic with a constant.
	Jitter func() float64
}

// WebhookPass counts what one pass of the deliverer did.
type WebhookPass struct {
	// Delivered events were acknowledged with a 2xx.
	Delivered int
	// Failed events were refused or not answered, and wait for a retry.
	Failed int
	// GaveUp events failed their last attempt and will not be sent again.
	GaveUp int
	// Skipped events belong to an app without a webhook URL, or to a
	// deleted app: they were marked delivered without being sent.
	Skipped int
	// Deferred events were held back, not sent, behind an earlier event of
	// their app that waits for a retry.
	Deferred int
}

func (p *WebhookPass) add(q WebhookPass) {
	p.Delivered += q.Delivered
	p.Failed += q.Failed
	p.GaveUp += q.GaveUp
	p.Skipped += q.Skipped
	p.Deferred += q.Deferred
}

func (p WebhookPass) total() int { return p.Delivered + p.Failed + p.GaveUp + p.Skipped + p.Deferred }

// webhookSettings are a Webhooks' fields with the defaults filled in.
type webhookSettings struct {
	client                 *http.Client
	now                    func() time.Time
	log                    *slog.Logger
	metrics                *Metrics
	interval               time.Duration
	batch, concurrency     int
	minBackoff, maxBackoff time.Duration
	maxAttempts            int
	jitter                 func() float64
}

func (w *Webhooks) settings() *webhookSettings {
	s := &webhookSettings{
		now: w.Now, log: w.Logger, metrics: w.Metrics,
		interval: orDefault(w.Interval, DefaultWebhookInterval),
		batch:    w.Batch, concurrency: w.Concurrency, maxAttempts: w.MaxAttempts,
		minBackoff: orDefault(w.MinBackoff, DefaultWebhookMinBackoff),
		maxBackoff: orDefault(w.MaxBackoff, DefaultWebhookMaxBackoff),
		jitter:     w.Jitter,
	}
	// A copy of the client that never follows a redirect: a receiver must
	// not be able to point spotoken's signed requests somewhere else.
	c := http.Client{Timeout: DefaultWebhookTimeout}
	if w.Client != nil {
		c = *w.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.batch <= 0 {
		s.batch = DefaultWebhookBatch
	}
	if s.concurrency <= 0 {
		s.concurrency = DefaultWebhookConcurrency
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = DefaultWebhookMaxAttempts
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	if s.jitter == nil {
		s.jitter = rand.Float64
	}
	return s
}

// backoff is the wait after an event's attempt-th failed attempt:
// exponential, with full jitter, at least minBackoff.
func (s *webhookSettings) backoff(attempt int) time.Duration {
	ceiling := s.minBackoff
	for i := 1; i < attempt && ceiling < s.maxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, s.maxBackoff)
	j := min(max(s.jitter(), 0), 1)
	return max(time.Duration(j*float64(ceiling)), s.minBackoff)
}

func (s *webhookSettings) count(outcome string, n int) {
	if s.metrics != nil {
		for range n {
			s.metrics.webhook(outcome)
		}
	}
}

// Run delivers due events every Interval (at once again when a pass found a
// full batch) until ctx is done, and then returns nil promptly: requests in
// flight are abandoned, and their events are sent again later. A failing
// pass is logged and retried at the next interval.
func (w *Webhooks) Run(ctx context.Context) error {
	if w.Store == nil {
		return errors.New("server: Webhooks needs a Store")
	}
	s := w.settings()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		pass, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Warn("webhooks: pass failed", "err", err)
		}
		if err == nil && pass.total() >= s.batch {
			continue // a backlog: go on without waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce makes one pass: it takes up to Batch due events and delivers them,
// each app's in order and several apps at once. It returns what it did and
// the first store error it met; events it could not record are tried again
// in a later pass. When ctx ends, requests in flight are abandoned and
// their events left due.
func (w *Webhooks) RunOnce(ctx context.Context) (WebhookPass, error) {
	if w.Store == nil {
		return WebhookPass{}, errors.New("server: Webhooks needs a Store")
	}
	s := w.settings()
	now := s.now()
	due, err := w.Store.PendingEvents(ctx, now, s.batch)
	if err != nil {
		return WebhookPass{}, fmt.Errorf("webhooks: pending events: %w", err)
	}
	if len(due) == 0 {
		return WebhookPass{}, nil
	}
	// The oldest undelivered events, due or not (but not given up): an
	// app's oldest one that is not due yet waits for a retry, and holds
	// back the app's later events.
	window, err := w.Store.PendingEvents(ctx, webhookGaveUp.Add(-24*time.Hour), s.batch)
	if err != nil {
		return WebhookPass{}, fmt.Errorf("webhooks: pending events: %w", err)
	}
	waiting := map[string]*spotoken.Event{}
	for _, e := range window {
		if _, seen := waiting[e.AppID]; !seen && e.NextAttemptAt.After(now) {
			waiting[e.AppID] = e
		}
	}

	byApp := map[string][]*spotoken.Event{}
	var apps []string
	for _, e := range due {
		if _, ok := byApp[e.AppID]; !ok {
			apps = append(apps, e.AppID)
		}
		byApp[e.AppID] = append(byApp[e.AppID], e)
	}
	var (
		mu    sync.Mutex
		total WebhookPass
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, s.concurrency)
	)
	for _, app := range apps {
		events := byApp[app]
		slices.SortFunc(events, func(a, b *spotoken.Event) int { return cmp.Compare(a.ID, b.ID) })
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			pass, err := w.deliverApp(ctx, s, app, events, waiting[app])
			mu.Lock()
			defer mu.Unlock()
			total.add(pass)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return total, ctx.Err()
	}
	if len(errs) > 0 {
		return total, errs[0]
	}
	return total, nil
}

// hold keeps an app's events after behind from being sent before until.
type hold struct {
	behind int64
	until  time.Time
}

// deliverApp delivers one app's due events, oldest first, one at a time.
// waiting, when not nil, is the app's oldest undelivered event, which waits
// for a retry.
func (w *Webhooks) deliverApp(ctx context.Context, s *webhookSettings, appID string, events []*spotoken.Event, waiting *spotoken.Event) (WebhookPass, error) {
	var pass WebhookPass
	app, err := w.Store.App(ctx, appID)
	if errors.Is(err, spotoken.ErrNotFound) || (err == nil && app.WebhookURL == "") {
		// Nothing to deliver to (and a deleted app's events would stay
		// in the outbox for ever): mark them delivered.
		for _, e := range events {
			if err := w.Store.MarkEventDelivered(ctx, e.ID, s.now()); err != nil {
				return pass, fmt.Errorf("webhooks: mark event %d delivered: %w", e.ID, err)
			}
			pass.Skipped++
			s.count("skipped", 1)
		}
		return pass, nil
	}
	if err != nil {
		return pass, fmt.Errorf("webhooks: app %s: %w", appID, err)
	}
	target, problem := newWebhookTarget(app)
	var h *hold
	if waiting != nil {
		h = &hold{behind: waiting.ID, until: waiting.NextAttemptAt}
	}
	for _, e := range events {
		if ctx.Err() != nil {
			return pass, nil
		}
		if h != nil && e.ID > h.behind {
			if err := w.Store.MarkEventFailed(ctx, e.ID, h.until, fmt.Sprintf("held back behind %s", webhookID(h.behind))); err != nil {
				return pass, fmt.Errorf("webhooks: hold event %d back: %w", e.ID, err)
			}
			pass.Deferred++
			continue
		}
		body, err := webhookBody(w.withConnectLink(ctx, s, e))
		if err != nil {
			// Never happens to data the broker wrote; give up at once
			// rather than hold the app's other events back.
			if err := w.Store.MarkEventFailed(ctx, e.ID, webhookGaveUp, "gave up: the event's data is not valid JSON"); err != nil {
				return pass, fmt.Errorf("webhooks: mark event %d failed: %w", e.ID, err)
			}
			pass.GaveUp++
			s.count("gave_up", 1)
			s.log.Error("webhook event has invalid data; giving up on it", "app", app.ID, "event", webhookID(e.ID), "type", string(e.Type))
			continue
		}
		failure := problem
		var retryAfter time.Duration
		var detail error
		if failure == "" {
			failure, retryAfter, detail, err = w.send(ctx, s, target, e.ID, body)
			if err != nil {
				return pass, nil // ctx ended: the event stays due
			}
		}
		at := s.now()
		// Record the attempt even if ctx ends now: a delivery that
		// succeeded should not be sent again for want of a write.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if failure == "" {
			err = w.Store.MarkEventDelivered(rctx, e.ID, at)
			cancel()
			if err != nil {
				return pass, fmt.Errorf("webhooks: mark event %d delivered: %w", e.ID, err)
			}
			pass.Delivered++
			s.count("delivered", 1)
			continue
		}
		attempt := e.Attempts + 1
		next, lastError, outcome := webhookGaveUp, fmt.Sprintf("gave up after %d attempts: %s", attempt, failure), "gave_up"
		h = &hold{behind: e.ID, until: at.Add(s.minBackoff)}
		if attempt < s.maxAttempts {
			wait := s.backoff(attempt)
			if retryAfter > wait {
				wait = min(retryAfter, s.maxBackoff)
			}
			next, lastError, outcome = at.Add(wait), failure, "failed"
			h.until = next
		}
		err = w.Store.MarkEventFailed(rctx, e.ID, next, lastError)
		cancel()
		if err != nil {
			return pass, fmt.Errorf("webhooks: mark event %d failed: %w", e.ID, err)
		}
		attrs := []any{"app", app.ID, "event", webhookID(e.ID), "type", string(e.Type), "endpoint", target.endpoint,
			"attempt", attempt, "error", failure}
		if detail != nil {
			attrs = append(attrs, "detail", target.scrub(detail.Error()))
		}
		switch {
		case outcome == "gave_up":
			pass.GaveUp++
			s.log.Error("webhook delivery failed; giving up on the event", attrs...)
		case problem != "":
			pass.Failed++
			s.log.Error("webhook delivery impossible: fix the app with `spotoken apps`", append(attrs, "retry_at", next)...)
		default:
			pass.Failed++
			s.log.Warn("webhook delivery failed", append(attrs, "retry_at", next)...)
		}
		s.count(outcome, 1)
	}
	return pass, nil
}

// webhookTarget is where and how an app's deliveries go.
type webhookTarget struct {
	url string
	// keys sign each delivery: the webhook secret's, and during a
	// rotation the previous secret's too.
	keys     [][]byte
	endpoint string // host and path: what logs may show of the URL
	query    string // the raw query, scrubbed from error details
}

// newWebhookTarget checks app's webhook settings; problem, when not empty,
// says why nothing can be delivered.
func newWebhookTarget(app *spotoken.App) (t webhookTarget, problem string) {
	u, err := url.Parse(app.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return t, "app has an invalid webhook URL"
	}
	t = webhookTarget{url: app.WebhookURL, endpoint: u.Host + u.EscapedPath(), query: u.RawQuery}
	if app.WebhookSecret == "" {
		return t, "app has no webhook secret"
	}
	for _, secret := range []spotoken.Secret{app.WebhookSecret, app.PreviousWebhookSecret} {
		if secret == "" {
			continue
		}
		key, err := spotoken.WebhookKey(secret)
		if err != nil {
			return t, "app has an invalid webhook secret"
		}
		t.keys = append(t.keys, key)
	}
	return t, ""
}

// scrub removes the URL's query (and the URL itself) from an error message.
func (t webhookTarget) scrub(msg string) string {
	msg = strings.ReplaceAll(msg, t.url, t.endpoint)
	if t.query != "" {
		msg = strings.ReplaceAll(msg, t.query, "…")
	}
	return msg
}

// send makes one delivery attempt of body. It returns failure "" on a 2xx, or a
// short, secret-free description of the failure ("status 500", "timeout")
// with the Retry-After the receiver asked for and the transport error's
// detail; err is ctx's error when ctx ended, and nothing should be recorded.
func (w *Webhooks) send(ctx context.Context, s *webhookSettings, t webhookTarget, eventID int64, body []byte) (failure string, retryAfter time.Duration, detail, err error) {
	at := s.now()
	id := webhookID(eventID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return "app has an invalid webhook URL", 0, nil, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", webhookUserAgent)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	sigs := make([]string, len(t.keys))
	for i, key := range t.keys {
		sigs[i] = signWebhook(key, id, at.Unix(), body)
	}
	req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message holds the whole URL
		}
		return describeTransportError(err), 0, err, nil
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponse))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return "", 0, nil, nil
	}
	return "status " + strconv.Itoa(resp.StatusCode), parseWebhookRetryAfter(resp.Header.Get("Retry-After"), at), nil, nil
}

// describeTransportError names a failed request's cause in a few words.
func describeTransportError(err error) string {
	var ne net.Error
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &dns):
		return "host not found"
	case errors.As(err, &cert), errors.As(err, &unknownAuthority), errors.As(err, &hostname),
		errors.As(err, &record), errors.As(err, &alert):
		return "tls handshake failed"
	}
	return "connection failed"
}

// parseWebhookRetryAfter reads a Retry-After header (delay-seconds or an
// HTTP date); zero when absent or invalid.
func parseWebhookRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// webhookID is an event's webhook-id.
func webhookID(id int64) string { return "evt_" + strconv.FormatInt(id, 10) }

// webhookBody is the JSON body delivered for e.
func webhookBody(e *spotoken.Event) ([]byte, error) {
	data := json.RawMessage(e.Data)
	if len(bytes.TrimSpace(data)) == 0 {
		data = json.RawMessage("{}")
	}
	return json.Marshal(struct {
		Type      spotoken.EventType `json:"type"`
		Timestamp time.Time          `json:"timestamp"`
		Data      json.RawMessage    `json:"data"`
	}{e.Type, e.CreatedAt.UTC(), data})
}

// The errors of VerifyWebhook; match them with errors.Is.
var (
	// ErrWebhookSignature: no valid signature (or a required header is
	// missing).
	ErrWebhookSignature = errors.New("webhook: no valid signature")
	// ErrWebhookTimestamp: the webhook-timestamp is missing, malformed, or
	// too far from now.
	ErrWebhookTimestamp = errors.New("webhook: timestamp missing or outside the tolerance")
)

// SignWebhook returns the webhook-signature of a delivery with id, sent at
// ts, of body: "v1," and the base64 of the HMAC-SHA256 of "{id}.{ts}.{body}"
// (ts in Unix seconds), keyed with the key of secret ("whsec_" and base64,
// see spotoken.WebhookKey).
func SignWebhook(secret spotoken.Secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := spotoken.WebhookKey(secret)
	if err != nil {
		return "", err
	}
	return signWebhook(key, id, ts.Unix(), body), nil
}

func webhookMAC(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return m.Sum(nil)
}

func signWebhook(key []byte, id string, ts int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(webhookMAC(key, id, strconv.FormatInt(ts, 10), body))
}

// VerifyWebhook checks a delivery as a receiver should, on the raw body as
// received: the webhook-timestamp header must be within tolerance of now
// (zero means DefaultWebhookTolerance, five minutes; negative skips the
// check, to re-verify a stored delivery), and one of the space-separated
// "v1," signatures of the webhook-signature header must be the HMAC-SHA256
// of "{webhook-id}.{webhook-timestamp}.{body}" under secret's key, compared
// in constant time. Its errors match ErrWebhookTimestamp or
// ErrWebhookSignature under errors.Is, or are spotoken.EInvalid errors for
// a malformed secret.
func VerifyWebhook(secret spotoken.Secret, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := spotoken.WebhookKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := header.Get("webhook-id"), header.Get("webhook-timestamp"), header.Get("webhook-signature")
	if id == "" {
		return fmt.Errorf("%w: no webhook-id header", ErrWebhookSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q is not Unix seconds", ErrWebhookTimestamp, ts)
	}
	if tolerance == 0 {
		tolerance = DefaultWebhookTolerance
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: webhook-timestamp is %s from now", ErrWebhookTimestamp, d.Round(time.Second))
		}
	}
	if sigs == "" {
		return fmt.Errorf("%w: no webhook-signature header", ErrWebhookSignature)
	}
	want := webhookMAC(key, id, ts, body) // the header as sent is what was signed
	for _, sig := range strings.Fields(sigs) {
		version, b64, _ := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if version == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrWebhookSignature
}
