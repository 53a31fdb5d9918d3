package refresh

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
)

// TestCacheHash: keys of every length up to 70 bytes hash (both the short
// path and strHashOther), distinct keys (the same id in two apps, the same
// bytes split differently between app and id) hash apart, and the hash is
// a function of the key's content, not of where its strings live.
func TestCacheHash(t *testing.T) {
	c := newTokenCache(100)
	seen := map[uint64]spotoken.ConnectionKey{}
	add := func(k spotoken.ConnectionKey) {
		t.Helper()
		h := c.hash(k)
		if prev, ok := seen[h]; ok && prev != k {
			t.Fatalf("%q and %q hash alike", prev, k)
		}
		seen[h] = k
		copied := spotoken.ConnectionKey{AppID: strings.Clone(k.AppID), ID: strings.Clone(k.ID)}
		if c.hash(copied) != h {
			t.Fatalf("%q: the hash of a copy differs", k)
		}
	}
	long := strings.Repeat("0123456789abcdef", 5)
	for n := range 71 {
		for _, app := range []string{"", "a", "app", "bench-app-1", "bench-app-2", long[:n]} {
			add(spotoken.ConnectionKey{AppID: app, ID: long[:n]})
			add(spotoken.ConnectionKey{AppID: app, ID: long[:n] + "x"})
		}
	}
	for i := range 20 {
		whole := fmt.Sprintf("split-me-somewhere-%d", i)
		for j := range len(whole) + 1 {
			add(spotoken.ConnectionKey{AppID: whole[:j], ID: whole[j:]})
		}
	}
}
