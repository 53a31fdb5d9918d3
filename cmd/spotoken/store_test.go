package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

func TestOpenStoreCreatesKeyFileOnce(t *testing.T) {
	t.Setenv(seal.EnvVar, "")
	os.Unsetenv(seal.EnvVar)
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	opts := &storeOptions{DB: filepath.Join(dir, "data", "spotoken.db")}

	// Without create, the missing database is the error (not its key file).
	if _, err := opts.openStore(context.Background(), log, false); err == nil || !strings.Contains(err.Error(), "no database at") {
		t.Fatalf("open without create: %v, want a missing database error", err)
	}
	for i := 0; i < 2; i++ {
		store, err := opts.openStore(context.Background(), log, true)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		store.Close()
	}
	keyPath := filepath.Join(dir, "data", "spotoken.keys")
	st, err := os.Stat(keyPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file beside the database: %v, mode %v", err, st)
	}
	if n := strings.Count(logs.String(), "created a new key file"); n != 1 {
		t.Errorf("logged the key file creation %d times, want once:\n%s", n, &logs)
	}
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Keys []struct{ Key string }
	}
	if err := json.Unmarshal(raw, &file); err != nil || len(file.Keys) != 1 || file.Keys[0].Key == "" {
		t.Fatalf("key file: %v, %+v", err, file)
	}
	if strings.Contains(logs.String(), file.Keys[0].Key) {
		t.Error("the log holds key material")
	}
}

func TestOpenStorePostgresNeedsKeys(t *testing.T) {
	os.Unsetenv(seal.EnvVar)
	opts := &storeOptions{DB: "postgres://nobody@127.0.0.1:1/x"}
	_, err := opts.openStore(context.Background(), slog.New(slog.DiscardHandler), true)
	if err == nil || !strings.Contains(err.Error(), "--key-file") {
		t.Errorf("postgres without keys: %v", err)
	}
}

func TestKeysRotate(t *testing.T) {
	os.Unsetenv(seal.EnvVar)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys.json")
	db := filepath.Join(dir, "spotoken.db")
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
		return out.String(), errb.String(), code
	}
	if _, e, code := run("keys", "generate", "--key-file", keyFile); code != 0 {
		t.Fatalf("generate: %d %s", code, e)
	}
	if _, e, code := run("keys", "rotate", "--db", db, "--key-file", keyFile); code != exitFailure || !strings.Contains(e, "no database") {
		t.Errorf("rotate without a database: exit %d, %s", code, e)
	}

	// Store a connection under key version 1.
	opts := &storeOptions{DB: db, KeyFile: keyFile}
	store, err := opts.openStore(context.Background(), slog.New(slog.DiscardHandler), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "c", ClientSecret: "app-secret"}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateConnection(ctx, &spotoken.Connection{AppID: "a", ID: "c1", State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	if _, e, code := run("keys", "add", "--key-file", keyFile); code != 0 {
		t.Fatalf("add: %d %s", code, e)
	}
	out, e, code := run("keys", "rotate", "--db", db, "--key-file", keyFile, "--batch", "1")
	if code != 0 || !strings.Contains(out, "Re-sealed 3 secrets") {
		t.Fatalf("rotate: exit %d, out %q, err %q", code, out, e)
	}
	if out, _, _ := run("keys", "rotate", "--db", db, "--key-file", keyFile); !strings.Contains(out, "Re-sealed 0 secrets") {
		t.Errorf("second rotate: %q", out)
	}
	if _, e, code := run("keys", "rotate", "--db", db, "--key-file", keyFile, "--batch", "0"); code != exitUsage {
		t.Errorf("--batch 0: exit %d, %s", code, e)
	}
}

func TestKeysStagedRotation(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
		return out.String(), errb.String(), code
	}
	if _, e, code := run("keys", "generate", "--key-file", keyFile); code != 0 {
		t.Fatalf("generate: %s", e)
	}
	if out, e, code := run("keys", "add", "--key-file", keyFile, "--staged"); code != 0 || !strings.Contains(out, "version 2") || !strings.Contains(out, "version 1 stays primary") {
		t.Fatalf("add --staged: %d %q %q", code, out, e)
	}
	if r, err := seal.LoadKeyFile(keyFile); err != nil || r.Primary() != 1 {
		t.Fatalf("after staging: %v, %v", r, err)
	}
	if _, e, code := run("keys", "promote", "--key-file", keyFile); code != exitUsage {
		t.Errorf("promote without --version: %d %s", code, e)
	}
	if _, e, code := run("keys", "promote", "--key-file", keyFile, "--version", "9"); code != exitFailure || !strings.Contains(e, "key version 9") {
		t.Errorf("promote a missing version: %d %s", code, e)
	}
	if out, e, code := run("keys", "promote", "--key-file", keyFile, "--version", "2"); code != 0 || !strings.Contains(out, "Key version 2") {
		t.Fatalf("promote: %d %q %q", code, out, e)
	}
	if r, err := seal.LoadKeyFile(keyFile); err != nil || r.Primary() != 2 {
		t.Errorf("after promote: %v, %v", r, err)
	}
}
