// Package audit is spotoken's audit trail and its anomaly detectors.
//
// The trail answers "who used which token": one record per token vend,
// proxied call, connect, re-consent, deletion, API-key and admin action,
// with when, which app and connection, which credential, the client's
// address and user agent, and the outcome (spotoken.AuditRecord, format
// version spotoken.AuditVersion). Records never hold a secret: a secret
// involved (the access token vended) is kept as a keyed fingerprint
// (Fingerprinter), which `spotoken audit fingerprint` computes for a known
// value so the trail can be searched for it, as Vault's audit devices do.
//
// Two stances, on purpose. The high-volume records (vends, proxied calls,
// refused credentials) go through Trail.Record into a bounded queue that a
// background loop writes in batches: vending never waits for the audit
// write, and when the queue is full or a batch fails to write, records are
// dropped and counted (fail open: a stalled audit write must not take
// every app down). Lifecycle and admin changes are recorded in the same
// transaction as the change (spotoken.WithAudit): no record, no change
// (fail closed).
//
// The detectors read the records as they are written and the stores'
// shared marks (spotoken.AuditMark), so that several replicas raise each
// alert once: a key used from a new network, a connection's use far above
// its recent peak, a surge of needs_reauth in one app, a refresh token
// refused while spotoken held it as current under rotation (possible
// reuse), and repeated failed authentication from one address (the one
// detector that acts: the address is refused for a while). An alert is an
// event for the app's webhook, a record in the trail, a metric and a log
// line; docs/audit.md gives each rule and its limits.
//
// The package imports only the root package; cmd/spotoken wires it into
// the server (through server.Auditor) and the refresh engine.
package audit
