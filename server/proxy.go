package server

import (
	"net/http"

	"github.com/spotoken/spotoken"
)

func (s *Server) handleProxy(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	return spotoken.Errorf(spotoken.EInternal, "proxy: not yet")
}
