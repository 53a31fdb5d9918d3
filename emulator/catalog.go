package emulator

import (
	"fmt"
	"net/http"
)

// The emulator's small fixed catalog, enough for top items and playback.

type catalogArtist struct {
	id, name   string
	genres     []string
	popularity int
}

type catalogTrack struct {
	id, name        string
	artist          int // index into catalogArtists
	albumID, album  string
	durationMS      int
	popularity      int
	trackNumber     int
	releaseDate     string
	explicitContent bool
}

// catalogID makes a 22-character Spotify-style id.
func catalogID(kind byte, n int) string { return fmt.Sprintf("%cemu%018d", kind, n) }

var catalogArtists = func() []catalogArtist {
	names := []struct {
		name  string
		genre string
	}{
		{"The Loopback Addresses", "indie rock"}, {"Refresh Token Orchestra", "classical"},
		{"PKCE & the Verifiers", "synthpop"}, {"Bearer Realm", "post-punk"},
		{"Retry-After Quartet", "jazz"}, {"Grant Expiry", "ambient"},
	}
	out := make([]catalogArtist, len(names))
	for i, n := range names {
		out[i] = catalogArtist{id: catalogID('A', i+1), name: n.name, genres: []string{n.genre}, popularity: 80 - 7*i}
	}
	return out
}()

var catalogTracks = func() []catalogTrack {
	titles := []string{
		"Sixty Minutes", "Invalid Grant", "State of Mind", "Code Verifier", "No Store, No Cache",
		"Thirty-Second Window", "Rotation", "Consent", "Six Months", "Loopback",
		"Sealed at Rest", "One Refresh at a Time",
	}
	out := make([]catalogTrack, len(titles))
	for i, t := range titles {
		a := i % len(catalogArtists)
		out[i] = catalogTrack{
			id: catalogID('T', i+1), name: t, artist: a,
			albumID: catalogID('B', a+1), album: catalogArtists[a].name + " (Emulated)",
			durationMS: 150000 + 13000*i, popularity: 90 - 5*i, trackNumber: i/len(catalogArtists) + 1,
			releaseDate: fmt.Sprintf("20%02d-0%d-1%d", 10+i, 1+i%9, i%9), explicitContent: i%4 == 3,
		}
	}
	return out
}()

// artistObject is a (simplified unless full) artist object; dev leaves out
// what development-mode apps lost in 2026-02/03: popularity and followers.
func artistObject(r *http.Request, a catalogArtist, full, dev bool) map[string]any {
	o := map[string]any{
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/artist/" + a.id},
		"href":          baseURL(r) + "/v1/artists/" + a.id,
		"id":            a.id,
		"name":          a.name,
		"type":          "artist",
		"uri":           "spotify:artist:" + a.id,
	}
	if full {
		o["genres"] = a.genres
		o["images"] = []any{}
		if !dev {
			o["popularity"] = a.popularity
			o["followers"] = map[string]any{"href": nil, "total": 1000 * a.popularity}
		}
	}
	return o
}

// trackObject is a track object; dev leaves out its popularity, as
// development mode does since 2026-02/03.
func trackObject(r *http.Request, t catalogTrack, dev bool) map[string]any {
	artist := artistObject(r, catalogArtists[t.artist], false, dev)
	o := map[string]any{
		"album": map[string]any{
			"album_type":             "album",
			"artists":                []any{artist},
			"external_urls":          map[string]string{"spotify": "https://open.spotify.com/album/" + t.albumID},
			"href":                   baseURL(r) + "/v1/albums/" + t.albumID,
			"id":                     t.albumID,
			"images":                 []any{},
			"name":                   t.album,
			"release_date":           t.releaseDate,
			"release_date_precision": "day",
			"total_tracks":           len(catalogTracks) / len(catalogArtists),
			"type":                   "album",
			"uri":                    "spotify:album:" + t.albumID,
		},
		"artists":       []any{artist},
		"disc_number":   1,
		"duration_ms":   t.durationMS,
		"explicit":      t.explicitContent,
		"external_ids":  map[string]string{"isrc": fmt.Sprintf("XXEMU%07d", t.trackNumber*100+t.artist)},
		"external_urls": map[string]string{"spotify": "https://open.spotify.com/track/" + t.id},
		"href":          baseURL(r) + "/v1/tracks/" + t.id,
		"id":            t.id,
		"is_local":      false,
		"name":          t.name,
		"popularity":    t.popularity,
		"preview_url":   nil,
		"track_number":  t.trackNumber,
		"type":          "track",
		"uri":           "spotify:track:" + t.id,
	}
	if dev {
		delete(o, "popularity")
	}
	return o
}
