package server

import (
	"strings"

	"github.com/spotoken/spotoken"
)

// anyOf is a scope requirement met by any one of its scopes. The first is
// the one spotoken asks the user for when none is granted.
type anyOf []string

// endpointScopes is a Web API endpoint and the scopes it needs: every
// requirement in need must be met.
type endpointScopes struct {
	method string
	// path is the endpoint's path; a segment in braces ({id}) matches any
	// one segment.
	path string
	need []anyOf
}

// Scope names, to keep the table readable.
const (
	scopePlaybackRead    = "user-read-playback-state"
	scopePlaybackModify  = "user-modify-playback-state"
	scopeCurrentlyPlay   = "user-read-currently-playing"
	scopeRecentlyPlayed  = "user-read-recently-played"
	scopeTopRead         = "user-top-read"
	scopeLibraryRead     = "user-library-read"
	scopeLibraryModify   = "user-library-modify"
	scopeFollowRead      = "user-follow-read"
	scopeFollowModify    = "user-follow-modify"
	scopePlaylistPublic  = "playlist-modify-public"
	scopePlaylistPrivate = "playlist-modify-private"
	scopeImageUpload     = "ugc-image-upload"
)

var (
	needPlaybackRead   = []anyOf{{scopePlaybackRead}}
	needPlaybackModify = []anyOf{{scopePlaybackModify}}
	needLibraryRead    = []anyOf{{scopeLibraryRead}}
	needLibraryModify  = []anyOf{{scopeLibraryModify}}
	// Spotify lists both playlist-modify scopes for playlist changes: a
	// public playlist needs the first, a private one the second. Which one
	// applies depends on the playlist, which the path does not tell, so
	// either lets the request through and Spotify decides.
	needPlaylistModify = []anyOf{{scopePlaylistPublic, scopePlaylistPrivate}}
)

// webAPIScopes is what the proxy checks before it calls Spotify. It comes
// from the Web API reference (developer.spotify.com/documentation/web-api,
// "Authorization scopes" of each endpoint, as in Spotify's OpenAPI
// document) with these rules:
//
//   - Only scopes without which Spotify refuses the call are listed. Scopes
//     the reference names that only add data to the answer are not
//     required here: GET /v1/me (email, country, product),
//     playlist-read-private and playlist-read-collaborative on playlist
//     reads (without them Spotify returns public playlists only),
//     user-read-playback-position on shows and episodes (resume points).
//   - Where Spotify accepts alternatives the requirement is anyOf:
//     currently-playing takes user-read-currently-playing or
//     user-read-playback-state (the reference said "and/or" for years), the
//     queue user-read-playback-state or user-read-currently-playing.
//   - An endpoint not in the table is passed through unchecked: Spotify
//     decides, and answers 403 if a scope is missing.
//
// A HEAD request is checked as a GET.
var webAPIScopes = []endpointScopes{
	// Users.
	{"GET", "/v1/me", nil},
	{"GET", "/v1/me/top/{type}", []anyOf{{scopeTopRead}}},

	// Player.
	{"GET", "/v1/me/player", needPlaybackRead},
	{"PUT", "/v1/me/player", needPlaybackModify}, // transfer playback
	{"GET", "/v1/me/player/devices", needPlaybackRead},
	{"GET", "/v1/me/player/currently-playing", []anyOf{{scopeCurrentlyPlay, scopePlaybackRead}}},
	{"GET", "/v1/me/player/recently-played", []anyOf{{scopeRecentlyPlayed}}},
	{"GET", "/v1/me/player/queue", []anyOf{{scopePlaybackRead, scopeCurrentlyPlay}}},
	{"POST", "/v1/me/player/queue", needPlaybackModify},
	{"PUT", "/v1/me/player/play", needPlaybackModify},
	{"PUT", "/v1/me/player/pause", needPlaybackModify},
	{"POST", "/v1/me/player/next", needPlaybackModify},
	{"POST", "/v1/me/player/previous", needPlaybackModify},
	{"PUT", "/v1/me/player/seek", needPlaybackModify},
	{"PUT", "/v1/me/player/volume", needPlaybackModify},
	{"PUT", "/v1/me/player/repeat", needPlaybackModify},
	{"PUT", "/v1/me/player/shuffle", needPlaybackModify},

	// Playlists.
	{"GET", "/v1/me/playlists", nil}, // private ones need playlist-read-private
	{"POST", "/v1/me/playlists", needPlaylistModify},
	{"GET", "/v1/users/{user_id}/playlists", nil},
	{"POST", "/v1/users/{user_id}/playlists", needPlaylistModify},
	{"PUT", "/v1/playlists/{playlist_id}", needPlaylistModify},
	{"POST", "/v1/playlists/{playlist_id}/tracks", needPlaylistModify},
	{"PUT", "/v1/playlists/{playlist_id}/tracks", needPlaylistModify},
	{"DELETE", "/v1/playlists/{playlist_id}/tracks", needPlaylistModify},
	{"POST", "/v1/playlists/{playlist_id}/items", needPlaylistModify},
	{"PUT", "/v1/playlists/{playlist_id}/items", needPlaylistModify},
	{"DELETE", "/v1/playlists/{playlist_id}/items", needPlaylistModify},
	{"PUT", "/v1/playlists/{playlist_id}/images", []anyOf{{scopeImageUpload}, {scopePlaylistPublic, scopePlaylistPrivate}}},
	{"PUT", "/v1/playlists/{playlist_id}/followers", needPlaylistModify},
	{"DELETE", "/v1/playlists/{playlist_id}/followers", needPlaylistModify},

	// Library: saved tracks, albums, shows, episodes, audiobooks.
	{"GET", "/v1/me/tracks", needLibraryRead},
	{"PUT", "/v1/me/tracks", needLibraryModify},
	{"DELETE", "/v1/me/tracks", needLibraryModify},
	{"GET", "/v1/me/tracks/contains", needLibraryRead},
	{"GET", "/v1/me/albums", needLibraryRead},
	{"PUT", "/v1/me/albums", needLibraryModify},
	{"DELETE", "/v1/me/albums", needLibraryModify},
	{"GET", "/v1/me/albums/contains", needLibraryRead},
	{"GET", "/v1/me/shows", needLibraryRead},
	{"PUT", "/v1/me/shows", needLibraryModify},
	{"DELETE", "/v1/me/shows", needLibraryModify},
	{"GET", "/v1/me/shows/contains", needLibraryRead},
	{"GET", "/v1/me/episodes", needLibraryRead},
	{"PUT", "/v1/me/episodes", needLibraryModify},
	{"DELETE", "/v1/me/episodes", needLibraryModify},
	{"GET", "/v1/me/episodes/contains", needLibraryRead},
	{"GET", "/v1/me/audiobooks", needLibraryRead},
	{"PUT", "/v1/me/audiobooks", needLibraryModify},
	{"DELETE", "/v1/me/audiobooks", needLibraryModify},
	{"GET", "/v1/me/audiobooks/contains", needLibraryRead},

	// Follow.
	{"GET", "/v1/me/following", []anyOf{{scopeFollowRead}}},
	{"PUT", "/v1/me/following", []anyOf{{scopeFollowModify}}},
	{"DELETE", "/v1/me/following", []anyOf{{scopeFollowModify}}},
	{"GET", "/v1/me/following/contains", []anyOf{{scopeFollowRead}}},
}

// endpointFor returns the table's entry for method and path (the decoded
// Web API path, such as /v1/me/top/artists), or nil when the table does not
// know the endpoint.
func endpointFor(method, path string) *endpointScopes {
	if method == "HEAD" {
		method = "GET"
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i := range webAPIScopes {
		e := &webAPIScopes[i]
		if e.method == method && matchSegments(e.path, segs) {
			return e
		}
	}
	return nil
}

func matchSegments(pattern string, segs []string) bool {
	pat := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	if len(pat) != len(segs) {
		return false
	}
	for i, p := range pat {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			continue
		}
		if p != segs[i] {
			return false
		}
	}
	return true
}

// unmet returns the requirements of need that granted meets none of.
func unmet(granted spotoken.Scopes, need []anyOf) []anyOf {
	var out []anyOf
	for _, req := range need {
		met := false
		for _, s := range req {
			if granted.Has(s) {
				met = true
				break
			}
		}
		if !met {
			out = append(out, req)
		}
	}
	return out
}

// preferred returns the scope to ask for of each requirement.
func preferred(reqs []anyOf) spotoken.Scopes {
	out := make(spotoken.Scopes, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, r[0])
	}
	return out.Normalize()
}

// describe renders requirements for people: "a and b (or c)".
func describe(reqs []anyOf) string {
	parts := make([]string, 0, len(reqs))
	for _, r := range reqs {
		s := r[0]
		if len(r) > 1 {
			s += " (or " + strings.Join(r[1:], " or ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " and ")
}
