package local_test

import (
	"context"
	"fmt"
	"log"

	"github.com/zmb3/spotify/v2"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/local"
	"github.com/spotoken/spotoken/refresh"
)

// A single-process program: the refresh engine over the embedded store,
// without a broker over HTTP. Compile-only: it needs a store with the app
// "myapp" and a connected user.
func ExampleNewClient() {
	var engine *refresh.Engine // refresh.New(refresh.Config{Store: db, Refresher: ...})
	c, err := local.NewClient(engine, "myapp")
	if err != nil {
		log.Fatal(err)
	}
	sp := spotify.New(c.HTTPClient("user-42"))
	user, err := sp.CurrentUser(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(user.ID)
}

func ExampleNew() {
	var engine *refresh.Engine // refresh.New(refresh.Config{Store: db, Refresher: ...})
	p := local.New(engine, "myapp")
	// A Provider is a client.TokenProvider; it can be used directly.
	tok, err := p.FetchToken(context.Background(), "user-42", client.TokenRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Expiry)
}
