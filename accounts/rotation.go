package accounts

import (
	"errors"

	"github.com/spotoken/spotoken"
)

// ErrNoClients is returned by FirstAccepted when it is given no client.
var ErrNoClients = errors.New("accounts: no client to ask")

// FirstAccepted runs op with each client in turn and returns the first
// answer that is not Spotify refusing the client itself (invalid_client):
// a success, or any other failure. It serves an app whose client secret is
// being rotated, with one client per secret, the new secret's first: while
// Spotify accepts only the old secret, or only the new one, every request
// succeeds with one of them.
//
// A request refused as invalid_client was not processed, since a token
// endpoint authenticates the client before it looks at the grant (RFC 6749
// §3.2.1, §4.1.3), so presenting the same authorization code or refresh
// token again with the next client is safe; the emulator behaves so too.
// When every client is refused, the last refusal is returned.
func FirstAccepted(clients []*Client, op func(*Client) (*Grant, error)) (*Grant, error) {
	err := ErrNoClients
	for _, c := range clients {
		var g *Grant
		g, err = op(c)
		var ae *Error
		if !errors.As(err, &ae) || !ae.InvalidClient() {
			return g, err
		}
	}
	return nil, err
}

// AppClients returns one Client per client secret of app, in the order to
// try them (spotoken.App.ClientSecrets: the current secret, then the one it
// replaced while a rotation is under way), or one public client when app
// has no secret. cfg's ClientID and ClientSecret are replaced by app's.
func AppClients(cfg Config, app *spotoken.App) []*Client {
	secrets := app.ClientSecrets()
	if len(secrets) == 0 {
		secrets = []spotoken.Secret{""}
	}
	out := make([]*Client, len(secrets))
	for i, s := range secrets {
		cfg.ClientID, cfg.ClientSecret = app.ClientID, s
		out[i] = New(cfg)
	}
	return out
}
