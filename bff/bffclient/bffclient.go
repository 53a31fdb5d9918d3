// Package bffclient is what a browser app takes from spotoken's
// backend-for-frontend (package bff): the JavaScript client served at
// /bff/client.js, and the request header that every call to the BFF's
// endpoints carries. It imports nothing, so a Go service that serves the
// script from its own origin, or checks the header in a test, does not pull
// in spotoken's server.
//
// The script needs no build step and has no dependency:
//
//	<script src="https://tokens.example/bff/client.js"></script>
//	<script>
//	  const bff = SpotokenBFF.app("my-app");
//	  const me = await bff.session();        // null when signed out
//	  if (!me) bff.login();                  // to Spotify's consent page and back
//	  const r = await bff.fetch("v1/me/player/currently-playing");
//	</script>
//
// See docs/browser-apps.md.
package bffclient

import _ "embed"

// Script is client.js.
//
//go:embed client.js
var Script []byte

// ScriptPath is where spotoken serves Script.
const ScriptPath = "/bff/client.js"

// CSRFHeader and CSRFValue are the header every non-navigation request to
// the BFF carries. A page of another origin cannot send a custom header
// without a CORS preflight, which the BFF answers only for the app's own
// origins; the BFF refuses (401) any request without it.
const (
	CSRFHeader = "X-Spotoken-CSRF"
	CSRFValue  = "1"
)
