package accounts

import "golang.org/x/oauth2"

// GenerateVerifier returns a new PKCE code verifier (RFC 7636 §4.1): 32
// octets from crypto/rand, base64url-encoded without padding, which gives
// 43 characters of the unreserved set [A-Za-z0-9-_] and 256 bits of
// entropy, as the RFC recommends. Use a fresh one for every authorization,
// and keep it secret until Exchange.
func GenerateVerifier() string { return oauth2.GenerateVerifier() }

// S256Challenge returns the S256 code challenge for verifier (RFC 7636
// §4.2): BASE64URL(SHA256(ASCII(verifier))) without padding.
func S256Challenge(verifier string) string { return oauth2.S256ChallengeFromVerifier(verifier) }
