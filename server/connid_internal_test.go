package server

import (
	"regexp"
	"strings"
	"testing"
)

// connectionIDSpec is what validConnectionID implements.
var connectionIDSpec = regexp.MustCompile(`^[A-Za-z0-9._@:-]{1,128}$`)

// TestValidConnectionID holds validConnectionID to its regular expression
// on ids at and around every boundary: each byte value alone and inside a
// valid id, the empty id, 128 and 129 bytes, and a trailing newline.
func TestValidConnectionID(t *testing.T) {
	ids := []string{"", "a", strings.Repeat("x", 128), strings.Repeat("x", 129), "user\n", "user@example.com", "spotify:user:1", "a b", "é", "ä-1"}
	for b := range 256 {
		ids = append(ids, string([]byte{byte(b)}), "u"+string([]byte{byte(b)})+"1")
	}
	for _, id := range ids {
		if got, want := validConnectionID(id), connectionIDSpec.MatchString(id); got != want {
			t.Errorf("validConnectionID(%q) = %v, the expression says %v", id, got, want)
		}
	}
}

// FuzzValidConnectionID: on any input, validConnectionID agrees with the
// expression.
func FuzzValidConnectionID(f *testing.F) {
	for _, s := range []string{"", "a", "user@example.com", "a\x00b", strings.Repeat("z", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validConnectionID(id), connectionIDSpec.MatchString(id); got != want {
			t.Fatalf("validConnectionID(%q) = %v, the expression says %v", id, got, want)
		}
	})
}
