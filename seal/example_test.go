package seal_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/spotoken/spotoken/seal"
)

func ExampleKeyRing_Seal() {
	// In a server, the ring comes from LoadKeyFile or FromEnv.
	ring, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{1, 2, 3}}}, 1)
	if err != nil {
		log.Fatal(err)
	}
	// Bind the ciphertext to its row and field.
	ad := seal.AD("app_123", "conn_456", "refresh_token")
	ciphertext, err := ring.Seal([]byte("AQD...refresh token"), ad)
	if err != nil {
		log.Fatal(err)
	}

	plaintext, err := ring.Open(ciphertext, ad)
	fmt.Printf("%s %v\n", plaintext, err)

	// The same ciphertext moved to another connection's row does not open.
	_, err = ring.Open(ciphertext, seal.AD("app_123", "conn_789", "refresh_token"))
	fmt.Println(errors.Is(err, seal.ErrDecrypt))
	fmt.Println(err)
	// Output:
	// AQD...refresh token <nil>
	// true
	// seal: key version 1: decryption failed: wrong key, tampered ciphertext, or associated data of another row
}

func ExampleKey_String() {
	k := seal.Key{Version: 3, Material: [32]byte{0xde, 0xad, 0xbe, 0xef}}
	fmt.Println(k)
	fmt.Printf("%#v\n", k)
	// Output:
	// seal.Key{Version: 3, Material: REDACTED}
	// seal.Key{Version: 3, Material: REDACTED}
}
