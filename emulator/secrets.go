package emulator

import (
	"crypto/subtle"
	"fmt"
	"sync"
)

// Client-secret rotation. A registered client's secret is fixed by Config;
// SetClientSecrets replaces the secrets the token endpoint accepts for it,
// so tests can play the Spotify side of a rotation: the new secret issued
// (both accepted, or only the old one while a broker already presents the
// new), the old one revoked (only the new accepted).

// clientSecrets holds the secrets set by SetClientSecrets, by client id;
// a client without an entry accepts its Config secret.
type clientSecrets struct {
	mu sync.RWMutex
	m  map[string][]string
}

// SetClientSecrets makes the token endpoint accept exactly secrets (one or
// more) as the client secret of the confidential client clientID, from now
// on; a secret not in the list answers invalid_client ("Invalid client
// secret"), as a wrong one does. Tokens already issued stay valid. It is
// an error for an unknown or public client, or for no secret.
func (e *Emulator) SetClientSecrets(clientID string, secrets ...string) error {
	c := e.clients[clientID]
	switch {
	case c == nil:
		return fmt.Errorf("emulator: client %q is not registered", clientID)
	case c.Secret == "":
		return fmt.Errorf("emulator: client %q is public: it has no secret to rotate", clientID)
	case len(secrets) == 0:
		return fmt.Errorf("emulator: client %q needs at least one secret", clientID)
	}
	for _, s := range secrets {
		if s == "" {
			return fmt.Errorf("emulator: client %q: an empty secret", clientID)
		}
	}
	e.secrets.mu.Lock()
	defer e.secrets.mu.Unlock()
	if e.secrets.m == nil {
		e.secrets.m = make(map[string][]string)
	}
	e.secrets.m[clientID] = append([]string(nil), secrets...)
	return nil
}

// secretValid reports whether secret is one c accepts now, comparing in
// constant time.
func (e *Emulator) secretValid(c *Client, secret string) bool {
	e.secrets.mu.RLock()
	accepted, set := e.secrets.m[c.ID]
	e.secrets.mu.RUnlock()
	if !set {
		accepted = []string{c.Secret}
	}
	ok := false
	for _, s := range accepted {
		ok = subtle.ConstantTimeCompare([]byte(secret), []byte(s)) == 1 || ok
	}
	return ok
}
