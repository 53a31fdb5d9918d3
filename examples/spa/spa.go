// Package spa is the example single-page app of spotoken's
// backend-for-frontend (index.html, app.js, style.css): who is signed in
// and what they are playing, with no Spotify token in the page. spotoken
// serve --emulator serves it at /spa/; any static file server can serve it
// from another origin of the same site (see docs/browser-apps.md).
package spa

import "embed"

// Files are the app's files.
//
//go:embed index.html app.js style.css
var Files embed.FS
