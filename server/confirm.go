package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/spotoken/spotoken"
)

// The app's confirmation of a grant (POST /v1/connections/{id}/confirm).
//
// A connect link forwarded to someone else would link that person's
// Spotify account to the connection it names. A connect session made with
// require_confirmation holds the grant apart when the user comes back from
// Spotify: the connection is not created or changed, no token is vended or
// proxied, and the redirect to return_to carries a one-time confirm code.
// The app's backend posts the code back from the request in which it knows
// which of its users is signed in, and only if that user is the one the
// connection is for; then the grant becomes the connection's. Codes are
// stored as SHA-256 hashes, are used once, and expire with their grant
// after Config.ConfirmTTL.

type confirmRequest struct {
	Code string `json:"code"`
}

// errConfirmCode is every failure of a confirm code: unknown, used,
// expired, or another connection's.
var errConfirmCode = spotoken.Errorf(spotoken.EInvalid,
	"code is not a valid confirm code for this connection (unknown, already used, expired, or another connection's); connect the user again")

func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	ck, err := connectionKey(r, key)
	if err != nil {
		return err
	}
	var req confirmRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if !strings.HasPrefix(req.Code, "cc_") || len(req.Code) > 128 {
		return errConfirmCode
	}
	g, err := s.cfg.Store.TakePendingGrant(r.Context(), ck, pendingHash(domainConfirm, req.Code))
	if errors.Is(err, spotoken.ErrNotFound) || errors.Is(err, spotoken.ErrExpired) {
		return errConfirmCode
	}
	if err != nil {
		return err
	}
	if err := s.applyGrant(r.Context(), ck, g.Token, g.Scopes, g.SpotifyUserID, g.DisplayName); err != nil {
		return err
	}
	s.log.Info("connection confirmed by its app", "request_id", requestID(r), "connection", ck.String())
	c, err := s.cfg.Store.Connection(r.Context(), ck)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, NewConnectionView(c))
	return nil
}
