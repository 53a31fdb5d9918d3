// Package listing bounds the time of the stores' listings: a listing runs
// under a deadline of its own, shorter than a request's, so that no single
// call (one API request, one console page) holds a database connection of
// the store's small read pool for seconds while vends wait behind it.
package listing

import (
	"context"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

// DefaultTimeout is a listing's deadline when a store's configuration sets
// none. With every filtered listing read from an index a page takes
// milliseconds, even at a million connections; the deadline is the
// backstop for what no index serves.
const DefaultTimeout = 2 * time.Second

// Within runs list under timeout. When list fails
// because timeout passed (and not because ctx ended: a caller that gave up
// is told so as before), the error is an EQueryTimeout spotoken.Error,
// which says how to narrow the listing, with the driver's error wrapped
// beside it for the log (it names the listing). Other errors are returned as they are.
func Within[T any](ctx context.Context, timeout time.Duration, list func(ctx context.Context) (T, error)) (T, error) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := list(lctx)
	if err != nil && ctx.Err() == nil && lctx.Err() != nil {
		var zero T
		return zero, fmt.Errorf("%w (%w)", &spotoken.Error{Code: spotoken.EQueryTimeout, RetryAfter: time.Second,
			Message: fmt.Sprintf("the listing did not finish within %s; narrow it (a filter, a smaller limit) or try again", timeout)}, err)
	}
	return out, err
}
