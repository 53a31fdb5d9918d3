package main

// status --server: the connections of an app at a spotoken broker, over the
// HTTP API, with the app's API key from $SPOTOKEN_API_KEY.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spotoken/spotoken/server"
)

// maxStatusConnections bounds what status --server lists: past it, use
// 'connections list' on the broker's database or the API's cursor.
const maxStatusConnections = 10000

// brokerStatus lists the broker's connections (only, if set) and prints
// them as connections list does.
func brokerStatus(ctx context.Context, ios *IOStreams, opts *statusOptions, asJSON bool) error {
	base, err := parseHTTPURL("--server", opts.Server)
	if err != nil {
		return usageError{err}
	}
	key := os.Getenv(envAPIKey)
	if key == "" {
		return usageError{errors.New("--server needs the app's API key in $" + envAPIKey)}
	}
	api := &brokerAPI{base: strings.TrimSuffix(base.String(), "/"), key: key, http: &http.Client{Timeout: 30 * time.Second}}
	list := server.ConnectionList{Connections: []server.ConnectionView{}}
	if opts.Connection != "" {
		var v server.ConnectionView
		status, err := api.get(ctx, "/v1/connections/"+url.PathEscape(opts.Connection), &v)
		if status == http.StatusNotFound {
			return needsLoginError{fmt.Errorf("the broker has no connection %q: connect the user first (POST /v1/connect-sessions)", opts.Connection)}
		}
		if err != nil {
			return err
		}
		list.Connections = append(list.Connections, v)
	} else {
		cursor := ""
		for len(list.Connections) < maxStatusConnections {
			var page server.ConnectionList
			q := url.Values{"limit": {"1000"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			if _, err := api.get(ctx, "/v1/connections?"+q.Encode(), &page); err != nil {
				return err
			}
			list.Connections = append(list.Connections, page.Connections...)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if cursor != "" {
			fmt.Fprintf(ios.Err, "Showing the first %d connections; page through the rest with GET /v1/connections?cursor=%s.\n", len(list.Connections), cursor)
		}
	}
	if asJSON {
		return writeJSON(ios.Out, list)
	}
	if len(list.Connections) == 0 {
		_, err := fmt.Fprintln(ios.Out, "The broker has no connections for this API key's app.")
		return err
	}
	if err := printConnections(ios, &connectionsListOptions{}, list); err != nil {
		return err
	}
	for _, c := range list.Connections {
		if c.State == "needs_reauth" {
			fmt.Fprintf(ios.Err, "Connection %s needs the user to authorize again: mint a link with POST /v1/connect-sessions.\n", c.ID)
		}
	}
	return nil
}

// brokerAPI makes authenticated GETs to a broker's API.
type brokerAPI struct {
	base, key string
	http      *http.Client
}

// get decodes the JSON answer to GET path into out and returns the status.
// Its errors name the status and the broker's error code, never the key.
func (a *brokerAPI) get(ctx context.Context, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("--server: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Accept", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ask the broker: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read the broker's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e server.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusUnauthorized {
				return resp.StatusCode, fmt.Errorf("the broker refused the API key in $%s: %s (HTTP 401)", envAPIKey, e.Error)
			}
			return resp.StatusCode, fmt.Errorf("the broker answered %s (HTTP %d): %s", e.Error, resp.StatusCode, e.Description)
		}
		return resp.StatusCode, fmt.Errorf("the broker answered HTTP %d", resp.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode the broker's answer: %w", err)
	}
	return resp.StatusCode, nil
}
