package main

import (
	"errors"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

// spotifyScopes are the authorization scopes Spotify defines, sorted.
var spotifyScopes = spotoken.SpotifyScopes

// parseScopes parses a list of Spotify scopes separated by spaces or commas
// and refuses any scope Spotify does not define.
func parseScopes(s string) (spotoken.Scopes, error) {
	scopes := spotoken.Scopes(strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })).Normalize()
	if err := admin.CheckScopes(scopes); err != nil {
		return nil, errors.New(strings.TrimPrefix(spotoken.ErrorMessage(err), "default_scopes: "))
	}
	return scopes, nil
}
