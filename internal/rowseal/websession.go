package rowseal

import (
	"encoding/hex"

	"github.com/spotoken/spotoken"
)

// webSessionRow names a web session's row for associated data: its id hash,
// and the scope, app and subject it belongs to, so that a ciphertext moved
// to another session, or a session moved to another scope, app or subject
// behind the store's back, fails to open.
func webSessionRow(s *spotoken.WebSession) []string {
	return []string{hex.EncodeToString(s.IDHash[:]), s.Scope, s.AppID, s.Subject}
}

// WebSessionCSRF is a web session's anti-CSRF token. Only IDHash, Scope,
// AppID and Subject of s are read.
func WebSessionCSRF(s *spotoken.WebSession) Field {
	return Field{Table: "web_sessions", Column: "csrf", Row: webSessionRow(s)}
}

// WebSessionData is the data a handler keeps with a web session. Only
// IDHash, Scope, AppID and Subject of s are read.
func WebSessionData(s *spotoken.WebSession) Field {
	return Field{Table: "web_sessions", Column: "data", Row: webSessionRow(s)}
}

// SealWebSession seals s's CSRF token and data for its row.
func (c *Codec) SealWebSession(s *spotoken.WebSession) (csrf, data []byte, err error) {
	if csrf, err = c.Seal(WebSessionCSRF(s), s.CSRF); err != nil {
		return nil, nil, err
	}
	if data, err = c.Seal(WebSessionData(s), s.Data); err != nil {
		return nil, nil, err
	}
	return csrf, data, nil
}

// OpenWebSession opens the CSRF token and data of s's row into s, whose
// IDHash, Scope, AppID and Subject must be the row's.
func (c *Codec) OpenWebSession(s *spotoken.WebSession, csrf, data []byte) error {
	var err error
	if s.CSRF, err = c.Open(WebSessionCSRF(s), csrf); err != nil {
		return err
	}
	s.Data, err = c.Open(WebSessionData(s), data)
	return err
}
