// Command plainhttp sends one GET request to Spotify's Web API with
// net/http alone, on a token from a spotoken broker, and prints the answer's
// body.
//
// Usage:
//
//	SPOTOKEN_API_KEY=sk_... plainhttp -connection user-42 [-path /v1/me] [-broker URL] [-api-url URL]
//
// Flags, each also an environment variable:
//
//	-broker      the broker's base URL (SPOTOKEN_URL; default http://127.0.0.1:8080)
//	-connection  the connection id, your id for the user (SPOTOKEN_CONNECTION)
//	-api-url     Spotify's Web API base URL (SPOTIFY_API_URL; default https://api.spotify.com)
//	-path        the Web API path to GET (default /v1/me)
//
// The API key is read from SPOTOKEN_API_KEY only, never from the command
// line. A status other than 2xx is reported with Spotify's message, and
// exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spotoken/spotoken/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "plainhttp:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "plainhttp:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line or the environment.
type usageError string

func (e usageError) Error() string { return string(e) }

// maxBody bounds how much of Spotify's answer is read.
const maxBody = 10 << 20

// run is the program: GET the path, print the body to stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("plainhttp", flag.ContinueOnError)
	fs.SetOutput(stdout)
	broker := fs.String("broker", envOr("SPOTOKEN_URL", "http://127.0.0.1:8080"), "the spotoken broker's base `URL` (SPOTOKEN_URL)")
	connection := fs.String("connection", os.Getenv("SPOTOKEN_CONNECTION"), "the connection `id` (SPOTOKEN_CONNECTION)")
	apiURL := fs.String("api-url", envOr("SPOTIFY_API_URL", "https://api.spotify.com"), "Spotify's Web API base `URL` (SPOTIFY_API_URL)")
	path := fs.String("path", "/v1/me", "the Web API `path` to GET")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err.Error())
	}
	key := os.Getenv("SPOTOKEN_API_KEY")
	switch {
	case fs.NArg() > 0:
		return usageError("unexpected arguments: " + strings.Join(fs.Args(), " "))
	case *connection == "":
		return usageError("no connection: give -connection or SPOTOKEN_CONNECTION")
	case key == "":
		return usageError("no API key: set SPOTOKEN_API_KEY")
	case !strings.HasPrefix(*path, "/v1/"):
		return usageError("-path must start with /v1/")
	}
	c, err := client.New(*broker, key)
	if err != nil {
		return usageError(err.Error())
	}

	hc := c.HTTPClient(*connection)
	hc.Timeout = 30 * time.Second
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*apiURL, "/")+*path, nil)
	if err != nil {
		return usageError(fmt.Sprintf("-api-url and -path do not make a URL: %v", err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	var e *client.Error
	switch {
	case errors.As(err, &e) && (e.Code == client.CodeNeedsReauth || e.Code == client.CodeInsufficientScope):
		return fmt.Errorf("the user must authorize again: send them to %s", e.ConnectURL)
	case err != nil:
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("reading Spotify's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var se struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		json.Unmarshal(body, &se)
		return fmt.Errorf("GET %s: %s: %s", *path, resp.Status, se.Error.Message)
	}
	stdout.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
