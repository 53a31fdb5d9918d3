package spotoken

import (
	"context"
	"time"
)

// RateLimitStore keeps each app's rate-limit window at Spotify's token
// endpoint: when Spotify answers a token request with 429 and Retry-After,
// no replica may send another token request for that app before the window
// ends, because calling into the window makes Spotify lengthen it (hours
// have been seen). The window lives in the store so that every replica
// honours the one any of them learnt of.
type RateLimitStore interface {
	// RateLimitedUntil returns when appID's window ends; the zero time if
	// none was ever recorded (or the app does not exist).
	RateLimitedUntil(ctx context.Context, appID string) (time.Time, error)
	// ExtendRateLimit moves the end of appID's window to until unless it
	// already ends later (a window only grows, so of several replicas
	// answered 429 at once the longest Retry-After wins), and returns when
	// the window ends. ErrNotFound if the app does not exist.
	ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error)
	// RateLimits returns the windows that end after after, ordered by app.
	RateLimits(ctx context.Context, after time.Time) ([]AppRateLimit, error)
}

// AppRateLimit is an app's rate-limit window at Spotify's token endpoint.
type AppRateLimit struct {
	AppID string
	// Until is when the window ends: no token request before it.
	Until time.Time
}
