// Package spa is the example single-page app of spotoken's
// backend-for-frontend (index.html, app.js, style.css): who is signed in
// and what they are playing, with no Spotify token in the page. spotoken
// serve --emulator serves it at /spa/; any static file server can serve it
// from another origin of the same site (see docs/browser-apps.md).
package spa

import (
	"embed"
	"net/http"
)

// Files are the app's files.
//
//go:embed index.html app.js style.css
var Files embed.FS

// CSP lets the app, served from spotoken's own origin, load its own files
// and call its own origin, and nothing else.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves Files under prefix ("/spa/") with CSP.
func Handler(prefix string) http.Handler {
	files := http.StripPrefix(prefix, http.FileServerFS(Files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
