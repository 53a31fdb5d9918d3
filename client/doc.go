// Package client is the Go SDK for services that act for their users on
// Spotify through a spotoken broker.
//
// A Client asks the broker for a connection's access token (POST
// /v1/connections/{id}/token, see docs/api.md) with the app's API key, and
// hands it out in the shapes Go programs use:
//
//   - Client.Token: one *oauth2.Token, straight from the broker;
//   - Client.TokenSource: an oauth2.TokenSource that caches the token until
//     shortly before it expires (the expiry margin, one minute by default);
//   - Client.Transport and Client.HTTPClient: an http.RoundTripper and an
//     *http.Client that put "Authorization: Bearer <token>" on every
//     request, for any Web API client library, such as
//     github.com/zmb3/spotify/v2.
//
// For catalog calls that act for no user (search, tracks, artists), the
// app's own token, from Spotify's client-credentials grant through the
// broker's POST /v1/app-token, comes the same ways: Client.AppToken,
// Client.AppTokenSource, Client.AppTransport and Client.AppHTTPClient. The
// broker refuses it (CodeUnauthorizedClient) to an app without a client
// secret.
//
// The transport does what a Web API client must (SPOTIFY.md): when Spotify
// answers 401, it asks the broker for a new token with force_refresh and
// sends the request once more, whatever the 401 says ("Missing/invalid/
// expired access token" since 2026-07, "The access token expired" or
// "Invalid access token" before): the wording of Spotify's messages is
// never read, as it has changed before. The one exception is "Permissions
// missing", Spotify's 401 for a player endpoint called without its scope,
// which a new token cannot cure: it is returned as it is. When Spotify answers 429 it waits Retry-After and
// tries again, a bounded number of times (see RetryPolicy). A request is
// sent again only when its body can be replayed: no body, or
// http.Request.GetBody set, as http.NewRequest does for in-memory bodies.
//
// # Errors
//
// The broker's errors come back as *Error, with the HTTP status, the API's
// error code and, for needs_reauth and insufficient_scope, a fresh connect
// link to show the user:
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == client.CodeNeedsReauth {
//		// send the user to e.ConnectURL
//	}
//
// errors.Is(err, client.ErrNeedsReauth) says the same. Through the
// transport, such an error reaches the caller of http.Client.Do wrapped in
// a *url.Error, which errors.As unwraps. No error message ever holds the
// API key, an access token or a connect link.
//
// # Local mode
//
// A single-process program that embeds spotoken's store and refresh engine
// needs no HTTP hop to a broker: package client/local adapts a
// *refresh.Engine to TokenProvider, and NewWithProvider builds a Client on
// any TokenProvider, with the same TokenSource, Transport and HTTPClient.
//
// # Clocks
//
// A token's expiry is a point in time set by the broker's clock; the client
// compares it with its own (WithClock, default time.Now). Tests that move
// the broker's clock forward give the client the same clock.
package client
