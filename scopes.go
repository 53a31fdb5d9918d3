package spotoken

import "slices"

// SpotifyScopes are the authorization scopes Spotify defines, sorted; its
// /authorize refuses any other ("Illegal scope"). Source: Spotify's
// developer documentation, "Scopes".
var SpotifyScopes = []string{
	"app-remote-control",
	"playlist-modify-private",
	"playlist-modify-public",
	"playlist-read-collaborative",
	"playlist-read-private",
	"soa-create-partner",
	"soa-manage-entitlements",
	"soa-manage-partner",
	"streaming",
	"ugc-image-upload",
	"user-follow-modify",
	"user-follow-read",
	"user-library-modify",
	"user-library-read",
	"user-modify-playback-state",
	"user-read-currently-playing",
	"user-read-email",
	"user-read-playback-position",
	"user-read-playback-state",
	"user-read-private",
	"user-read-recently-played",
	"user-soa-link",
	"user-soa-unlink",
	"user-top-read",
}

// KnownScope reports whether Spotify defines scope.
func KnownScope(scope string) bool {
	_, ok := slices.BinarySearch(SpotifyScopes, scope)
	return ok
}
