// Command nowplaying prints a Spotify user's name and what they are playing,
// with github.com/zmb3/spotify/v2 on a token from a spotoken broker.
//
// Usage:
//
//	SPOTOKEN_API_KEY=sk_... nowplaying -connection user-42 [-broker URL] [-api-url URL]
//
// Flags, each also an environment variable:
//
//	-broker      the broker's base URL (SPOTOKEN_URL; default http://127.0.0.1:8080)
//	-connection  the connection id, your id for the user (SPOTOKEN_CONNECTION)
//	-api-url     Spotify's Web API base URL (SPOTIFY_API_URL; default
//	             https://api.spotify.com; the emulator's base URL to try it offline)
//
// The API key is read from SPOTOKEN_API_KEY only, never from the command
// line, where other users of the machine could see it.
//
// The connection needs scope user-read-currently-playing. When the user
// must authorize again, nowplaying prints the link to send them to and
// exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/zmb3/spotify/v2"

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
		fmt.Fprintln(os.Stderr, "nowplaying:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "nowplaying:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line or the environment.
type usageError string

func (e usageError) Error() string { return string(e) }

// config is what the command line and the environment say.
type config struct {
	broker, connection, apiURL, apiKey string
}

// parseFlags reads args and the environment.
func parseFlags(args []string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("nowplaying", flag.ContinueOnError)
	fs.SetOutput(output)
	var cfg config
	fs.StringVar(&cfg.broker, "broker", envOr("SPOTOKEN_URL", "http://127.0.0.1:8080"), "the spotoken broker's base `URL` (SPOTOKEN_URL)")
	fs.StringVar(&cfg.connection, "connection", os.Getenv("SPOTOKEN_CONNECTION"), "the connection `id` (SPOTOKEN_CONNECTION)")
	fs.StringVar(&cfg.apiURL, "api-url", envOr("SPOTIFY_API_URL", "https://api.spotify.com"), "Spotify's Web API base `URL` (SPOTIFY_API_URL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageError(err.Error())
	}
	switch {
	case fs.NArg() > 0:
		return cfg, usageError("unexpected arguments: " + strings.Join(fs.Args(), " "))
	case cfg.connection == "":
		return cfg, usageError("no connection: give -connection or SPOTOKEN_CONNECTION")
	}
	cfg.apiKey = os.Getenv("SPOTOKEN_API_KEY")
	if cfg.apiKey == "" {
		return cfg, usageError("no API key: set SPOTOKEN_API_KEY")
	}
	cfg.apiURL = strings.TrimRight(cfg.apiURL, "/")
	return cfg, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// run is the program: it prints the user and what they are playing to stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	c, err := client.New(cfg.broker, cfg.apiKey)
	if err != nil {
		return usageError(err.Error())
	}
	sp := spotify.New(c.HTTPClient(cfg.connection), spotify.WithBaseURL(cfg.apiURL+"/v1/"))

	user, err := sp.CurrentUser(ctx)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(stdout, "user: %s (%s)\n", user.DisplayName, user.ID)

	playing, err := sp.PlayerCurrentlyPlaying(ctx)
	if err != nil {
		return explain(err)
	}
	if !playing.Playing || playing.Item == nil {
		fmt.Fprintln(stdout, "playing: nothing")
		return nil
	}
	var artists []string
	for _, a := range playing.Item.Artists {
		artists = append(artists, a.Name)
	}
	fmt.Fprintf(stdout, "playing: %s by %s\n", playing.Item.Name, strings.Join(artists, ", "))
	return nil
}

// explain turns the broker's answers that ask something of a person into
// instructions.
func explain(err error) error {
	var e *client.Error
	if errors.As(err, &e) {
		switch e.Code {
		case client.CodeNeedsReauth, client.CodeInsufficientScope:
			return fmt.Errorf("the user must authorize again: send them to %s", e.ConnectURL)
		case client.CodeNotFound:
			return fmt.Errorf("no connection %q for this API key's app", e.ConnectionID)
		case client.CodeInvalidToken:
			return errors.New("the broker refused the API key (SPOTOKEN_API_KEY)")
		}
	}
	return err
}
