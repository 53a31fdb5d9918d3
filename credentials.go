package spotoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// APIKeyPrefix starts every API key, so a leaked key is easy to recognise
// (secret scanners look for it).
const APIKeyPrefix = "sk_"

// NewAPIKey mints a new API key for app: the key to hand its owner once,
// and the record to store, which holds only the key's SHA-256 hash and the
// first characters of the key, shown so people can tell keys apart.
func NewAPIKey(appID, name string, now time.Time) (key Secret, rec *APIKey) {
	id := randomString(9)
	k := APIKeyPrefix + randomString(32)
	return Secret(k), &APIKey{
		ID: "key_" + id, AppID: appID, Name: name, Prefix: k[:len(APIKeyPrefix)+6],
		Hash: HashAPIKey(Secret(k)), CreatedAt: now,
	}
}

// HashAPIKey is the SHA-256 of an API key, as stored and looked up.
func HashAPIKey(key Secret) [32]byte { return sha256.Sum256([]byte(key.Reveal())) }

// WebhookSecretPrefix starts a webhook signing secret, as the Standard
// Webhooks convention writes them: "whsec_" and the base64 of the key.
const WebhookSecretPrefix = "whsec_"

// NewWebhookSecret mints a webhook signing secret (a 32-byte key).
func NewWebhookSecret() Secret {
	b := make([]byte, 32)
	rand.Read(b)
	return Secret(WebhookSecretPrefix + base64.StdEncoding.EncodeToString(b))
}

// WebhookKey returns the HMAC key of a webhook secret made by
// NewWebhookSecret.
func WebhookKey(secret Secret) ([]byte, error) {
	s := secret.Reveal()
	if len(s) <= len(WebhookSecretPrefix) || s[:len(WebhookSecretPrefix)] != WebhookSecretPrefix {
		return nil, Errorf(EInvalid, "a webhook secret starts with %q", WebhookSecretPrefix)
	}
	k, err := base64.StdEncoding.DecodeString(s[len(WebhookSecretPrefix):])
	if err != nil || len(k) < 16 {
		return nil, Errorf(EInvalid, "a webhook secret is %q and the base64 of at least 16 bytes", WebhookSecretPrefix)
	}
	return k, nil
}

// NewEvent returns an event of type t about the connection key, at at, with
// data (which must not hold a secret) and the connection id as its payload.
// Times in data are written in UTC to the microsecond, as the stores and the
// API give them, so that a receiver can compare them as strings.
func NewEvent(t EventType, key ConnectionKey, at time.Time, data map[string]any) Event {
	payload := map[string]any{"connection_id": key.ID}
	for k, v := range data {
		if tv, ok := v.(time.Time); ok {
			v = tv.UTC().Truncate(time.Microsecond)
		}
		payload[k] = v
	}
	b, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("spotoken: event data must marshal: %v", err))
	}
	return Event{Type: t, AppID: key.AppID, ConnectionID: key.ID, Data: b, CreatedAt: at}
}

// randomString returns n random characters of the URL-safe base64 alphabet.
func randomString(n int) string {
	b := make([]byte, (n*6+7)/8)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
