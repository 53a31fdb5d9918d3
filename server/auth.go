package server

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
)

// maxAPIKeyLen bounds what is hashed and looked up as an API key.
const maxAPIKeyLen = 128

// touchEvery is how often a key's last-used time is written.
const touchEvery = time.Minute

// authCache remembers verified API keys for Config.AuthCacheTTL, so a busy
// service does not cost a database read per request, and writes a key's
// last-used time at most once a minute.
type authCache struct {
	s       *Server
	mu      sync.Mutex
	entries map[[32]byte]*authEntry
}

type authEntry struct {
	key      *spotoken.APIKey
	checked  time.Time // when the store was last read
	touched  time.Time // last-used time last written
	touching bool
}

func (a *authCache) init(s *Server) {
	a.s = s
	a.entries = make(map[[32]byte]*authEntry)
}

// errInvalidKey is every failure of a key that was presented: the client
// learns no more.
var errInvalidKey = &spotoken.Error{Code: EInvalidToken, Message: "A valid API key is required: Authorization: Bearer sk_…"}

// errTwoKeys: the request carries more than one Authorization header.
var errTwoKeys = spotoken.Errorf(spotoken.EInvalid, "the request has more than one Authorization header; send one")

// errNoKey: the request carries no Bearer credentials at all, so the
// challenge names no error (RFC 6750 §3.1).
var errNoKey = &spotoken.Error{Code: EInvalidToken, Message: "An API key is required: Authorization: Bearer sk_…"}

// authenticate returns the active API key that r carries.
func (a *authCache) authenticate(r *http.Request) (*spotoken.APIKey, error) {
	if len(r.Header.Values("Authorization")) > 1 {
		// Which one counts would depend on who reads them: a proxy in
		// front may check the first while another reads the last.
		return nil, errTwoKeys
	}
	scheme, raw, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, errNoKey
	}
	if !strings.HasPrefix(raw, spotoken.APIKeyPrefix) || len(raw) > maxAPIKeyLen {
		return nil, errInvalidKey
	}
	hash := spotoken.HashAPIKey(spotoken.Secret(raw))
	now := a.s.cfg.Now()
	a.mu.Lock()
	e := a.entries[hash]
	a.mu.Unlock()
	ttl := a.s.cfg.AuthCacheTTL
	if e == nil || ttl < 0 || now.Sub(e.checked) >= ttl || now.Before(e.checked) {
		key, err := a.s.cfg.Store.APIKeyByHash(r.Context(), hash)
		if errors.Is(err, spotoken.ErrNotFound) {
			a.forget(hash)
			return nil, errInvalidKey
		}
		if err != nil && e != nil && errors.Is(err, spotoken.ErrStoreUnavailable) && now.Sub(e.checked) < ttl+a.s.cfg.OutageGrace {
			// The database is away: a key verified before keeps working
			// for up to OutageGrace past its AuthCacheTTL.
			if subtle.ConstantTimeCompare(e.key.Hash[:], hash[:]) != 1 || e.key.Revoked() {
				return nil, errInvalidKey
			}
			return e.key, nil
		}
		if err != nil {
			return nil, err
		}
		e = &authEntry{key: key, checked: now, touched: key.LastUsedAt}
		if ttl >= 0 {
			a.mu.Lock()
			if old := a.entries[hash]; old != nil && old.touched.After(e.touched) {
				e.touched = old.touched
			}
			a.entries[hash] = e
			a.mu.Unlock()
		}
	}
	// The store found the key by its hash; compare in constant time anyway.
	if subtle.ConstantTimeCompare(e.key.Hash[:], hash[:]) != 1 || e.key.Revoked() {
		return nil, errInvalidKey
	}
	a.touch(e, now)
	return e.key, nil
}

func (a *authCache) forget(hash [32]byte) {
	a.mu.Lock()
	delete(a.entries, hash)
	a.mu.Unlock()
}

// touch records the key's use, at most once per touchEvery, off the
// request's path.
func (a *authCache) touch(e *authEntry, now time.Time) {
	a.mu.Lock()
	if e.touching || now.Sub(e.touched) < touchEvery {
		a.mu.Unlock()
		return
	}
	e.touching = true
	a.mu.Unlock()
	go func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		err := a.s.cfg.Store.TouchAPIKey(ctx, e.key.ID, now)
		a.mu.Lock()
		e.touching = false
		if err == nil {
			e.touched = now
		}
		a.mu.Unlock()
		if err != nil && !errors.Is(err, spotoken.ErrNotFound) {
			a.s.log.Warn("record API key use", "key_id", e.key.ID, "err", err)
		}
	}()
}

// authenticated wraps an API handler: it authenticates the API key and
// answers the handler's error as JSON. With an audit trail it refuses an
// address over the failed-authentication limit before looking at its
// credentials, and records the request's outcome once it is known.
func (s *Server) authenticated(h func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Audit == nil {
			key, err := s.auth.authenticate(r)
			if err == nil {
				err = h(w, r, key)
			}
			if err != nil {
				s.writeError(w, r, err)
			}
			return
		}
		ip := ClientIP(r, s.cfg.TrustedProxies)
		if wait := s.cfg.Audit.AuthWait(ip); wait > 0 {
			s.authLimited(w, r, wait)
			return
		}
		key, err := s.auth.authenticate(r)
		if err == nil {
			r = withNote(r, s.auditActor(r, key, ip))
			err = h(w, r, key)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
		s.auditRequest(w, r, key, ip, err)
	})
}
