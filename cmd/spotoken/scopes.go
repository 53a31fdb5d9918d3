package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spotoken/spotoken"
)

// spotifyScopes are the authorization scopes Spotify defines, sorted.
var spotifyScopes = spotoken.SpotifyScopes

// parseScopes parses a list of Spotify scopes separated by spaces or commas
// and refuses any scope Spotify does not define.
func parseScopes(s string) (spotoken.Scopes, error) {
	scopes := spotoken.Scopes(strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })).Normalize()
	var unknown []string
	for _, sc := range scopes {
		if _, ok := slices.BinarySearch(spotifyScopes, sc); !ok {
			unknown = append(unknown, fmt.Sprintf("%q", sc))
		}
	}
	if len(unknown) > 0 {
		word := "scope"
		if len(unknown) > 1 {
			word = "scopes"
		}
		return nil, fmt.Errorf("unknown Spotify %s %s; valid scopes are: %s", word, strings.Join(unknown, ", "), strings.Join(spotifyScopes, " "))
	}
	return scopes, nil
}
