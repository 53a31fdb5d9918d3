package main

// The personal commands (login, token, status, logout) keep their grants in
// the same store as the broker, as an app and a connection: a profile P is
// the reserved app "_profile.P" (its Spotify client ID and sealed client
// secret, if any) with one connection, also named P, holding the sealed
// tokens, and the app's endpoints (AppEndpoints) recording where it logged
// in. So tokens are sealed like every other connection's, the refresh
// engine refreshes them unchanged (persisting rotation before it hands out a
// token), and logout is DeleteApp, which erases the tokens and the client
// secret. App names starting with '_' are reserved: 'apps create' refuses them.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/spotoken/spotoken"
)

const (
	// profileAppPrefix starts the app ID of every profile.
	profileAppPrefix = "_profile."
	// defaultProfile is the profile of --profile's default.
	defaultProfile = "default"
	// maxProfileName keeps the profile's app ID within maxAppName.
	maxProfileName = maxAppName - len(profileAppPrefix)
	// Spotify's hosts: the accounts service and the Web API.
	defaultAccountsURL = "https://accounts.spotify.com"
	defaultAPIURL      = "https://api.spotify.com"
)

// reservedAppName reports whether name is reserved for spotoken's own apps.
func reservedAppName(name string) bool { return strings.HasPrefix(name, "_") }

// profileKey is the connection key of profile name.
func profileKey(name string) spotoken.ConnectionKey {
	return spotoken.ConnectionKey{AppID: profileAppPrefix + name, ID: name}
}

// validateProfile checks a profile name: 1 to 55 letters, digits, '-', '_', '.'.
func validateProfile(name string) error {
	if name == "" {
		return usageError{errors.New("--profile must not be empty")}
	}
	if len(name) > maxProfileName {
		return usageError{fmt.Errorf("--profile: a profile name has at most %d characters, got %d", maxProfileName, len(name))}
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return usageError{fmt.Errorf("--profile %q: a profile name may hold only letters, digits, '-', '_' and '.'", name)}
		}
	}
	return nil
}

// loginCommand is the command that logs in to profile again.
func loginCommand(profile string) string {
	if profile == defaultProfile {
		return "spotoken login"
	}
	return "spotoken login --profile " + profile
}

// loginHint is the advice of every "needs login" error of a profile that
// exists: a new login asks for the scopes the last one asked for.
func loginHint(profile string) string { return "run '" + loginCommand(profile) + "'" }

// noProfile is the error for a profile that does not exist; a first login
// needs --scopes.
func noProfile(profile string) error {
	return needsLoginError{fmt.Errorf("not logged in: no profile %q; run '%s --scopes SCOPES'", profile, loginCommand(profile))}
}

// localOptions are the flags of the commands on local profiles.
type localOptions struct {
	store   storeOptions
	Profile string
}

func (o *localOptions) addFlags(f *pflag.FlagSet) {
	o.store.addFlags(f)
	f.StringVar(&o.Profile, "profile", defaultProfile, "the profile: a name for one login (letters, digits, '-', '_', '.')")
}

// openLocal opens the store for a command on profiles. A SQLite database
// that does not exist yet holds no profile: then it returns (nil, nil),
// unless --db named it and !missingOK, when the path is more likely
// mistyped: then the error says to check it.
func (o *localOptions) openLocal(ctx context.Context, ios *IOStreams, missingOK bool) (spotoken.Store, error) {
	db := o.store.DB
	if db == "" {
		db = defaultDBPath()
	}
	if !isPostgres(db) {
		if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
			if o.store.DB != "" && !missingOK {
				return nil, o.store.checkExists(db)
			}
			return nil, nil
		}
	}
	return o.store.openStore(ctx, adminLogger(ios), false)
}

// profile is a profile as status shows it: no secret.
type profile struct {
	Profile        string          `json:"profile"`
	State          spotoken.State  `json:"state"`
	SpotifyUserID  string          `json:"spotify_user_id,omitempty"`
	DisplayName    string          `json:"display_name,omitempty"`
	ClientID       string          `json:"client_id"`
	Scopes         spotoken.Scopes `json:"scopes"`
	ExpiresAt      *time.Time      `json:"expires_at,omitempty"`
	LastRefreshAt  *time.Time      `json:"last_refresh_at,omitempty"`
	LastErrorCode  string          `json:"last_error,omitempty"`
	ConsentedAt    *time.Time      `json:"consented_at,omitempty"`
	GrantExpiresAt *time.Time      `json:"grant_expires_at,omitempty"`
	// The accounts service and Web API the profile logged in with; left
	// out for profiles made before spotoken recorded them (Spotify's).
	AccountsURL string `json:"accounts_url,omitempty"`
	APIURL      string `json:"api_url,omitempty"`
}

// newProfile describes the profile of app and c; e is its endpoints, nil
// when none are recorded.
func newProfile(app *spotoken.App, e *spotoken.Endpoints, c *spotoken.Connection) profile {
	p := profile{
		Profile: c.ID, State: c.State, SpotifyUserID: c.SpotifyUserID, DisplayName: c.DisplayName,
		ClientID: app.ClientID, Scopes: nonNil(c.Scopes), ExpiresAt: optTime(c.Token.Expiry),
		LastRefreshAt: optTime(c.LastRefreshAt), LastErrorCode: c.LastErrorCode,
		ConsentedAt: optTime(c.ConsentedAt), GrantExpiresAt: optTime(c.GrantExpiresAt),
	}
	if e != nil {
		p.AccountsURL, p.APIURL = e.AccountsURL, e.APIURL
	}
	return p
}

// profileEndpoints returns the endpoints recorded for profile name, or nil
// for a profile made before they were recorded.
func profileEndpoints(ctx context.Context, store spotoken.EndpointStore, name string) (*spotoken.Endpoints, error) {
	e, err := store.AppEndpoints(ctx, profileKey(name).AppID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the endpoints of profile %q: %w", name, err)
	}
	return &e, nil
}
