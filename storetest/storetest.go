// Package storetest is the one conformance suite that every spotoken store
// passes: round trips of every type, not-found and conflict errors,
// compare-and-swap under contention, leases, Due, counts, rate-limit
// windows, deletion, key
// rotation, tampering, and a raw read of the database that must find no
// plaintext secret.
//
// A store package runs it from its tests:
//
//	func TestConformance(t *testing.T) { storetest.Run(t, newBackend) }
package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// Backend is one empty database of the store under test.
type Backend interface {
	// Open opens the store on this backend's database with the given clock
	// and key ring. Every Open of one Backend sees the same database; the
	// suite closes what it opens.
	Open(t *testing.T, now func() time.Time, keys *seal.KeyRing) (spotoken.Store, error)
	// Dump returns the database's raw bytes (SQLite: every file; PostgreSQL:
	// every table's rows as text), which must hold no plaintext secret.
	Dump(t *testing.T) []byte
	// CopyTokens overwrites the sealed tokens of connection to with those of
	// connection from, bypassing the store, as an attacker with database
	// access might.
	CopyTokens(t *testing.T, from, to spotoken.ConnectionKey)
	// CorruptTokens flips one bit of the sealed refresh token of key,
	// bypassing the store.
	CorruptTokens(t *testing.T, key spotoken.ConnectionKey)
	// AppCiphertext returns the bytes stored in the sealed column
	// (client_secret, webhook_secret, previous_client_secret or
	// previous_webhook_secret) of app id, nil for NULL, bypassing the store.
	AppCiphertext(t *testing.T, id, column string) []byte
	// SetAppCiphertext overwrites the sealed column of app id with ct,
	// bypassing the store, as an attacker with database access might.
	SetAppCiphertext(t *testing.T, id, column string, ct []byte)
	// WebSessionColumn returns the stored value of a column of the web
	// session with idHash ([]byte, string, or nil for NULL), bypassing the
	// store.
	WebSessionColumn(t *testing.T, idHash [32]byte, column string) any
	// SetWebSessionColumn overwrites a column of the web session with
	// idHash with a value WebSessionColumn returned, bypassing the store,
	// as an attacker with database access might.
	SetWebSessionColumn(t *testing.T, idHash [32]byte, column string, value any)
}

// Clock is a settable clock for the stores under test.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed time, truncated to the microsecond
// (the precision stores keep).
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Run runs the suite. newBackend returns a fresh, empty database for each
// subtest.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Apps", testApps},
		{"APIKeys", testAPIKeys},
		{"Pending", testPending},
		{"ConnectionRoundTrip", testConnectionRoundTrip},
		{"ConnectionUpdate", testConnectionUpdate},
		{"ConnectionList", testConnectionList},
		{"ConnectionCounts", testConnectionCounts},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"LeaseContention", testLeaseContention},
		{"LeaseExpiry", testLeaseExpiry},
		{"CommitReleasesLease", testCommitReleasesLease},
		{"Due", testDue},
		{"DueUsed", testDueUsed},
		{"ExpiringGrants", testExpiringGrants},
		{"Delete", testDelete},
		{"Events", testEvents},
		{"RateLimits", testRateLimits},
		{"KeyRotation", testKeyRotation},
		{"WrongKey", testWrongKey},
		{"Tampering", testTampering},
		{"AppTampering", testAppTampering},
		{"AuditRecords", testAuditRecords},
		{"AuditInTransaction", testAuditInTransaction},
		{"AuditFailClosed", testAuditFailClosed},
		{"AuditBatchAtomic", testAuditBatchAtomic},
		{"AuditListingsMatch", testAuditListingsMatch},
		{"AuditRetention", testAuditRetention},
		{"AuditMarks", testAuditMarks},
		{"WebSessions", testWebSessions},
		{"WebSessionExpiry", testWebSessionExpiry},
		{"WebSessionCaps", testWebSessionCaps},
		{"WebSessionsParallel", testWebSessionsParallel},
		{"WebSessionTampering", testWebSessionTampering},
		{"WebSessionReseal", testWebSessionReseal},
		{"BrowserApps", testBrowserApps},
		{"PendingLogin", testPendingLogin},
		{"NoPlaintextAtRest", testNoPlaintext},
		{"PendingGrants", testPendingGrants},
		{"PendingCap", testPendingCap},
		{"RefreshUnknown", testRefreshUnknown},
		{"AppSecretRotation", testAppSecretRotation},
		{"AdminKeys", testAdminKeys},
		{"AppTokens", testAppTokens},
		{"AppTokenLeaseContention", testAppTokenLeaseContention},
		{"EventLog", testEventLog},
		{"FindConnections", testFindConnections},
		{"OperatorResealAndNoPlaintext", testOperatorReseal},
		{"Endpoints", testEndpoints},
		{"BrowseConnections", testBrowseConnections},
		{"CountUndelivered", testCountUndelivered},
		{"RefreshTallies", testRefreshTallies},
		{"ListingsByState", testListingsByState},
		{"PageLimits", testPageLimits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newHarness(t, newBackend(t)))
		})
	}
}

// harness is one backend, its clock, its key rings, and an open store.
type harness struct {
	backend Backend
	clock   *Clock
	ring1   *seal.KeyRing // version 1 only
	ring12  *seal.KeyRing // versions 1 and 2, primary 2
	ring2   *seal.KeyRing // version 2 only
	store   spotoken.Store
}

func newHarness(t *testing.T, b Backend) *harness {
	k1 := seal.Key{Version: 1, Material: [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}}
	k2 := seal.Key{Version: 2, Material: [32]byte{9, 8, 7, 6, 5, 4, 3, 2, 1}}
	h := &harness{backend: b, clock: NewClock(),
		ring1:  mustRing(t, []seal.Key{k1}, 1),
		ring12: mustRing(t, []seal.Key{k1, k2}, 2),
		ring2:  mustRing(t, []seal.Key{k2}, 2),
	}
	h.store = h.open(t, h.ring1)
	return h
}

func mustRing(t *testing.T, keys []seal.Key, primary uint32) *seal.KeyRing {
	t.Helper()
	r, err := seal.NewKeyRing(keys, primary)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// open opens another store on the harness's database with keys.
func (h *harness) open(t *testing.T, keys *seal.KeyRing) spotoken.Store {
	t.Helper()
	s, err := h.backend.Open(t, h.clock.Now, keys)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
