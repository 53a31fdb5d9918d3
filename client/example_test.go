package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/zmb3/spotify/v2"
	"golang.org/x/oauth2"

	"github.com/spotoken/spotoken/client"
)

// The examples that talk to a broker are compile-only: they need a running
// broker at https://broker.example and a key in SPOTOKEN_API_KEY.

func ExampleNew() {
	c, err := client.New("https://broker.example", os.Getenv("SPOTOKEN_API_KEY"),
		client.WithExpiryMargin(2*time.Minute),
		client.WithRetryPolicy(client.RetryPolicy{MaxRetries: 3, MaxWait: 5 * time.Second}),
		client.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}),
	)
	if err != nil {
		log.Fatal(err)
	}
	// One client serves every connection of the app.
	sp := spotify.New(c.HTTPClient("user-42"))
	user, err := sp.CurrentUser(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(user.DisplayName)
}

func ExampleClient_Token() {
	c, err := client.New("https://broker.example", os.Getenv("SPOTOKEN_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	// A long job: a token that stays valid for at least 30 minutes.
	tok, err := c.Token(context.Background(), "user-42", client.MinTTL(30*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Expiry, client.Scopes(tok))
}

func ExampleClient_TokenSource() {
	c, err := client.New("https://broker.example", os.Getenv("SPOTOKEN_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	// Any library that takes an oauth2.TokenSource; the broker is asked
	// again only when the cached token nears its expiry.
	hc := oauth2.NewClient(context.Background(), c.TokenSource("user-42"))
	resp, err := hc.Get("https://api.spotify.com/v1/me")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}

func ExampleClient_HTTPClient() {
	c, err := client.New("https://broker.example", os.Getenv("SPOTOKEN_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	sp := spotify.New(c.HTTPClient("user-42"))
	playing, err := sp.PlayerCurrentlyPlaying(ctx)
	var e *client.Error
	switch {
	case errors.As(err, &e) && e.Code == client.CodeNeedsReauth:
		fmt.Println("ask the user to connect again at", e.ConnectURL)
	case err != nil:
		log.Fatal(err)
	case playing.Item != nil:
		fmt.Println("now playing:", playing.Item.Name)
	}
}

// staticProvider hands out one token: a stand-in for a broker.
type staticProvider struct{}

func (staticProvider) FetchToken(ctx context.Context, connectionID string, req client.TokenRequest) (*oauth2.Token, error) {
	tok := &oauth2.Token{AccessToken: "token-of-" + connectionID, TokenType: "Bearer",
		Expiry: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}
	return tok.WithExtra(map[string]any{"scope": "user-read-email user-read-private"}), nil
}

func ExampleClient_Transport() {
	// A stand-in for Spotify that shows what it was sent.
	spotifyAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}))
	defer spotifyAPI.Close()

	c, err := client.NewWithProvider(staticProvider{})
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: c.Transport("user-42", http.DefaultTransport), Timeout: 10 * time.Second}
	resp, err := hc.Get(spotifyAPI.URL + "/v1/me")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	// Output: GET /v1/me Bearer token-of-user-42
}

func ExampleNewWithProvider() {
	c, err := client.NewWithProvider(staticProvider{})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.TokenSource("user-42").Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.AccessToken, tok.TokenType, client.Scopes(tok))
	// Output: token-of-user-42 Bearer [user-read-email user-read-private]
}

func ExampleScopes() {
	tok := (&oauth2.Token{AccessToken: "..."}).WithExtra(map[string]any{"scope": "playlist-read-private user-read-email"})
	fmt.Println(client.Scopes(tok))
	// Output: [playlist-read-private user-read-email]
}

func ExampleError() {
	// What a call through the transport returns when the user removed the
	// app's access: the broker's needs_reauth, wrapped.
	err := fmt.Errorf("loading playlists: %w", &client.Error{
		ConnectionID: "user-42", StatusCode: http.StatusConflict, Code: client.CodeNeedsReauth,
		Description: "the user must authorize again",
		ConnectURL:  "https://broker.example/connect/cs_example",
	})

	var e *client.Error
	if errors.As(err, &e) && e.Code == client.CodeNeedsReauth {
		fmt.Println("reconnect at", e.ConnectURL)
	}
	fmt.Println(errors.Is(err, client.ErrNeedsReauth))
	fmt.Println(err)
	// Output:
	// reconnect at https://broker.example/connect/cs_example
	// true
	// loading playlists: spotoken: connection "user-42": needs_reauth (HTTP 409): the user must authorize again
}

func ExampleMinTTL() {
	c, err := client.New("https://broker.example", os.Getenv("SPOTOKEN_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Token(context.Background(), "user-42", client.MinTTL(10*time.Minute)); err != nil {
		log.Fatal(err)
	}
}

func ExampleForceRefresh() {
	c, err := client.New("https://broker.example", os.Getenv("SPOTOKEN_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	// After Spotify refused a token that looked valid. (The transport does
	// this by itself on a 401.)
	if _, err := c.Token(context.Background(), "user-42", client.ForceRefresh()); err != nil {
		log.Fatal(err)
	}
}
