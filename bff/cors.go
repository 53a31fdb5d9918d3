package bff

import (
	"net/http"
	"slices"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/bff/bffclient"
)

// CORS for the app's SPA: exact origins only, always with credentials
// (the session cookie), never "*"; an origin not listed gets no
// Access-Control-Allow-Origin, so its page cannot read any answer, and its
// preflight is refused, so its page cannot send the custom header.

// preflightMaxAge is how long a browser may cache a preflight's answer, in
// seconds.
const preflightMaxAge = "600"

// proxyMethods are the methods the API route forwards, as the proxy does.
var proxyMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}

// allowedHeaders are the request headers a preflight may ask for: the CSRF
// header and those the proxy passes on to Spotify; lower case.
var allowedHeaders = []string{"x-spotoken-csrf", "content-type", "accept", "accept-language", "if-none-match", "if-modified-since"}

// routeMethods are the methods of each route, by its last path segment
// before {path}: what a preflight may ask for.
func routeMethods(route string) []string {
	switch route {
	case "session":
		return []string{"GET"}
	case "logout", "token":
		return []string{"POST"}
	}
	return proxyMethods
}

// corsHeaders sets the CORS answer for a request from an allowed origin:
// the origin itself, with credentials. Vary: Origin always, as the answer
// depends on it.
func corsHeaders(w http.ResponseWriter, r *http.Request, b *spotoken.BrowserApp) {
	hd := w.Header()
	hd.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" || !b.AllowsOrigin(origin) {
		return
	}
	hd.Set("Access-Control-Allow-Origin", origin)
	hd.Set("Access-Control-Allow-Credentials", "true")
	hd.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
}

// preflight decides a CORS preflight (OPTIONS with
// Access-Control-Request-Method) for route: allowed only from one of the
// app's origins, for one of the route's methods, and for headers among
// allowedHeaders. It returns the headers to answer with, or ok false.
func preflight(b *spotoken.BrowserApp, route, origin, method, headers string) (allowMethods, allowHeaders string, ok bool) {
	if origin == "" || !b.AllowsOrigin(origin) {
		return "", "", false
	}
	methods := routeMethods(route)
	if !slices.Contains(methods, method) {
		return "", "", false
	}
	var asked []string
	if strings.TrimSpace(headers) != "" {
		for _, f := range strings.Split(headers, ",") {
			name := strings.ToLower(strings.TrimSpace(f))
			if !slices.Contains(allowedHeaders, name) {
				return "", "", false
			}
			if !slices.Contains(asked, name) {
				asked = append(asked, name)
			}
		}
	}
	if len(asked) == 0 {
		asked = []string{strings.ToLower(bffclient.CSRFHeader)}
	}
	return strings.Join(methods, ", "), strings.Join(asked, ", "), true
}
