package spotoken

import "context"

// Endpoints are the Spotify services an app's grants were issued by, when
// they are not Spotify's own hosts: the emulator's base URL, say. The
// personal profiles of 'spotoken login' record theirs, so that 'spotoken
// token' refreshes at the accounts service that issued the grant without
// being told again. The broker itself takes its endpoints from its flags.
type Endpoints struct {
	// AccountsURL is the accounts service's base URL (Spotify's:
	// https://accounts.spotify.com), without a trailing slash.
	AccountsURL string
	// APIURL is the Web API's base URL (Spotify's: https://api.spotify.com).
	APIURL string
}

// EndpointStore keeps the Endpoints of apps.
type EndpointStore interface {
	// SetAppEndpoints records app appID's endpoints, replacing any recorded
	// before; ErrNotFound if the app does not exist. Deleting the app
	// deletes them.
	SetAppEndpoints(ctx context.Context, appID string, e Endpoints) error
	// AppEndpoints returns app appID's endpoints; ErrNotFound if none were
	// recorded (or the app does not exist).
	AppEndpoints(ctx context.Context, appID string) (Endpoints, error)
}
