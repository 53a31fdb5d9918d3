package server_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/spotoken/spotoken/server"
)

// FuzzTokenResponseJSON: TokenResponse's hand-written encoding is byte for
// byte what encoding/json makes of its fields, for any strings and times.
func FuzzTokenResponseJSON(f *testing.F) {
	f.Add("BQDx-plain_token.123", "Bearer", int64(1790000000), int64(123456789), "user-read-email user-read-private")
	f.Add(`quote"back\slash`, "", int64(0), int64(0), "")
	f.Add("<script>&amp;</script>", "Bearer", int64(-62135596800), int64(1), "a\u2028b")
	f.Add("ctl\x00\x1f\x7f", "é", int64(253402300799), int64(999999999), "\xff\xfe invalid utf-8")
	f.Fuzz(func(t *testing.T, token, typ string, sec, nsec int64, scope string) {
		at := time.Unix(sec, nsec%1e9).UTC()
		if at.Year() < 0 || at.Year() > 9999 {
			t.Skip("encoding/json refuses years outside 0..9999; the broker never has them")
		}
		resp := server.TokenResponse{AccessToken: token, TokenType: typ, ExpiresAt: at, Scope: scope}
		type plain server.TokenResponse // the same fields, without the method
		want, err := json.Marshal(plain(resp))
		if err != nil {
			t.Fatal(err)
		}
		got, err := resp.MarshalJSON()
		if err != nil || string(got) != string(want) {
			t.Errorf("MarshalJSON = %s, %v\nencoding/json: %s", got, err, want)
		}
	})
}
