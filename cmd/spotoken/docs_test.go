package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md from the command tree")

// cliDocsPath is the command-line reference, generated from the cobra
// command tree by TestCLIDocs.
const cliDocsPath = "../../docs/cli.md"

// TestCLIDocs fails when docs/cli.md is not what the command tree
// generates; regenerate it with -update.
func TestCLIDocs(t *testing.T) {
	// Machine-dependent defaults print as the variable they come from.
	t.Setenv("XDG_DATA_HOME", "$XDG_DATA_HOME")
	got := genCLIDocs(newRootCmd(&IOStreams{In: strings.NewReader(""), Out: new(bytes.Buffer), Err: new(bytes.Buffer)}))
	if *update {
		if err := os.WriteFile(cliDocsPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(cliDocsPath)
	if err != nil {
		t.Fatalf("%v; generate it with: go test ./cmd/spotoken -run TestCLIDocs -update", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("docs/cli.md is stale; regenerate it with: go test ./cmd/spotoken -run TestCLIDocs -update\n(-generated +file):\n%s", diff)
	}
}

const cliDocsIntro = `# The spotoken command line

<!-- Generated from the cobra command tree by TestCLIDocs (cmd/spotoken/docs_test.go).
     Do not edit: change the commands' help, then run
     go test ./cmd/spotoken -run TestCLIDocs -update -->

Every command prints its own help with ` + "`--help`" + `; this page gathers them.

## Conventions

- **Exit status**: 0 success, 1 failure, 2 usage error (a bad flag or
  argument), 4 a login is needed (` + "`token`" + `, ` + "`status --profile`" + `, ` + "`logout`" + `: no
  such profile or broker connection, or Spotify refused the grant; the
  message says which ` + "`spotoken login`" + ` to run).
- **Environment**: every flag can also be set with ` + "`SPOTOKEN_<FLAG>`" + `
  (upper case, dashes as underscores), e.g. ` + "`SPOTOKEN_DB`" + `; a flag on the
  command line wins. Secrets are never flags: ` + "`login`" + ` reads a client
  secret from ` + "`SPOTIFY_CLIENT_SECRET`" + ` or standard input, ` + "`token --server`" + `
  its API key from ` + "`SPOTOKEN_API_KEY`" + `.
- **--json** (global): machine-readable output on standard output, with
  stable snake_case field names; a failure is then one line of JSON on
  standard error, ` + "`" + `{"error", "error_description", "exit_status"}` + "`" + `, where
  ` + "`error`" + ` is ` + "`usage_error`" + ` (exit 2), ` + "`needs_login`" + ` (exit 4), an API error
  code when the failure has one (` + "`temporarily_unavailable`" + `, ` + "`rate_limited`" + `,
  ...), else ` + "`failed`" + `.
- **Version**: ` + "`spotoken version`" + ` (or ` + "`--json`" + `) prints the module version and
  the commit the binary was built from.
- **Shell completion**: ` + "`spotoken completion bash|zsh|fish|powershell`" + ` prints
  a completion script, e.g. ` + "`source <(spotoken completion bash)`" + `; see
  ` + "`spotoken completion <shell> --help`" + ` to install it for good.

## Personal use: login, token, status, logout

` + "`spotoken login`" + ` authorizes your own Spotify app for your account with the
Authorization Code flow and PKCE on a loopback redirect (RFC 8252): register
` + "`http://127.0.0.1/callback`" + ` (without a port: any port then matches) as a
redirect URI of the app on Spotify's developer dashboard. Spotify refuses
` + "`localhost`" + `. ` + "`--scopes`" + ` are required for a new profile (` + "`none`" + ` for none);
logging in again reuses the last ones. Then ` + "`spotoken token`" + ` prints a fresh
access token, never one valid for less than ` + "`--min-ttl`" + ` (when the refresh
fails it exits 1 with the reason):

` + "```sh" + `
export SPOTIFY_CLIENT_ID=0123abcd...
spotoken login --scopes "user-read-currently-playing user-top-read"
curl -H "Authorization: Bearer $(spotoken token)" https://api.spotify.com/v1/me/player/currently-playing
` + "```" + `

Storage: the grants live in the same database as the broker's (by default
` + "`$XDG_DATA_HOME/spotoken/spotoken.db`" + `, sealed with the key file beside it),
as an app and a connection like any other. Profile *P* is the reserved app ` + "`_profile.P`" + `
(client ID, sealed client secret if any) with one connection *P* holding the
sealed tokens, so the refresh engine refreshes it like any connection and
persists a rotated refresh token before ` + "`token`" + ` prints anything. The
profile also records the accounts service and Web API it logged in with
(` + "`--accounts-url`" + `, ` + "`--api-url`" + `; Spotify's by default), so ` + "`token`" + ` and
` + "`status`" + ` need neither afterwards, against the emulator too. App names
starting with ` + "`_`" + ` are reserved; ` + "`apps list`" + ` leaves the profiles' apps out
(` + "`status`" + ` lists the profiles).
` + "`logout`" + ` deletes the app, erasing the tokens and the client secret.
Spotify has no revocation endpoint: remove the app's access at
https://www.spotify.com/account/apps/ .

## Commands
`

// genCLIDocs renders the command tree of root as Markdown.
func genCLIDocs(root *cobra.Command) string {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var b strings.Builder
	b.WriteString(cliDocsIntro)
	b.WriteString("\n")
	var index func(c *cobra.Command, depth int)
	index = func(c *cobra.Command, depth int) {
		for _, sub := range visibleCommands(c) {
			fmt.Fprintf(&b, "%s- [%s](#%s): %s\n", strings.Repeat("  ", depth), sub.CommandPath(), anchor(sub.CommandPath()), sub.Short)
			index(sub, depth+1)
		}
	}
	index(root, 0)
	b.WriteString("\n### Global flags\n\n```\n")
	b.WriteString(flagUsages(root.PersistentFlags()))
	b.WriteString("```\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range visibleCommands(c) {
			writeCommandDoc(&b, sub)
			walk(sub)
		}
	}
	walk(root)
	return b.String()
}

func visibleCommands(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && sub.Name() != "help" {
			out = append(out, sub)
		}
	}
	return out
}

func writeCommandDoc(b *strings.Builder, c *cobra.Command) {
	fmt.Fprintf(b, "\n### %s\n\n%s.\n\n```\n%s\n```\n", c.CommandPath(), strings.TrimSuffix(c.Short, "."), c.UseLine())
	if c.Long != "" {
		fmt.Fprintf(b, "\n%s\n", indentCode(c.Long))
	}
	if c.Example != "" {
		fmt.Fprintf(b, "\nExamples:\n\n```sh\n%s\n```\n", strings.TrimRight(c.Example, "\n"))
	}
	if c.HasAvailableLocalFlags() {
		fmt.Fprintf(b, "\nFlags:\n\n```\n%s```\n", flagUsages(c.LocalNonPersistentFlags()))
	}
	if subs := visibleCommands(c); len(subs) > 0 {
		b.WriteString("\nSubcommands:\n\n")
		for _, sub := range subs {
			fmt.Fprintf(b, "- [%s](#%s): %s\n", sub.CommandPath(), anchor(sub.CommandPath()), sub.Short)
		}
	}
}

// indentCode turns the two-space-indented lines of a command's help (its
// command examples) into Markdown code lines.
func indentCode(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   ") {
			lines[i] = "    " + strings.TrimPrefix(l, "  ")
		}
	}
	return strings.Join(lines, "\n")
}

func flagUsages(f *pflag.FlagSet) string {
	f.SortFlags = true
	return f.FlagUsagesWrapped(100)
}

// anchor is GitHub's anchor of a heading.
func anchor(heading string) string {
	return strings.ReplaceAll(strings.ToLower(heading), " ", "-")
}
