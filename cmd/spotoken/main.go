// Command spotoken keeps Spotify OAuth 2.0 credentials alive for the apps and
// services that act on a Spotify user's behalf.
//
// This is the only package that builds concrete types and wires them
// together; everything it runs lives in the module's library packages.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/spotoken/spotoken"
)

// Exit statuses, as documented in DESIGN.md §4.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitNeedsLogin: the command needs a login first (no such profile, or
	// Spotify refused its grant); the message says what to run.
	exitNeedsLogin = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks an error as the caller's misuse of the command line (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// needsLoginError marks an error that a (new) login cures (exit 4): no such
// profile or connection, or Spotify refused the grant.
type needsLoginError struct{ err error }

func (e needsLoginError) Error() string { return e.err.Error() }
func (e needsLoginError) Unwrap() error { return e.err }

// IOStreams are the standard streams a command reads and writes, so tests can
// run the real program in-process.
type IOStreams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Run runs the spotoken command line with args and returns the exit status.
// It returns when the command finishes or, for servers, when ctx is done.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ios := &IOStreams{In: stdin, Out: stdout, Err: stderr}
	root := newRootCmd(ios)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitStatus(err)
	if wantsJSON(cmd, args) {
		writeJSONError(stderr, err, code)
		return code
	}
	fmt.Fprintln(stderr, "spotoken:", err)
	if code == exitUsage {
		fmt.Fprintln(stderr, "Run 'spotoken --help' for usage.")
	}
	return code
}

// exitStatus is the exit status that err calls for.
func exitStatus(err error) int {
	var nl needsLoginError
	if errors.As(err, &nl) {
		return exitNeedsLogin
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		return exitUsage
	}
	return exitFailure
}

// cliError is an error as --json writes it on standard error: the API's
// error shape, plus the exit status.
type cliError struct {
	// Error is "usage_error" (exit 2), "needs_login" (exit 4), an API error
	// code when the failure carries one (not_found, unavailable,
	// rate_limited, ...), else "failed".
	Error       string `json:"error"`
	Description string `json:"error_description"`
	ExitStatus  int    `json:"exit_status"`
}

// writeJSONError writes err as one line of JSON to w.
func writeJSONError(w io.Writer, err error, status int) {
	ce := cliError{Error: "failed", Description: err.Error(), ExitStatus: status}
	var se *spotoken.Error
	switch {
	case status == exitUsage:
		ce.Error = "usage_error"
	case status == exitNeedsLogin:
		ce.Error = "needs_login"
	case errors.As(err, &se) && se.Code != spotoken.EInternal:
		ce.Error = se.Code
	}
	line, _ := json.Marshal(ce)
	fmt.Fprintf(w, "%s\n", line)
}

// wantsJSON reports whether the command line asked for --json, also when
// it failed before its flags were parsed: then it looks for the flag in
// args (before a "--") and in $SPOTOKEN_JSON.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd != nil {
		if f := cmd.Flags().Lookup("json"); f != nil && f.Changed {
			return f.Value.String() == "true"
		}
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" {
			return true
		}
		if v, ok := strings.CutPrefix(a, "--json="); ok {
			b, err := strconv.ParseBool(v)
			return err == nil && b
		}
	}
	b, err := strconv.ParseBool(os.Getenv("SPOTOKEN_JSON"))
	return err == nil && b
}

// isCobraUsageError recognises the errors cobra returns for an unknown
// command, which it does not type.
func isCobraUsageError(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}

func newRootCmd(ios *IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "spotoken",
		Short: "A token broker that keeps Spotify OAuth 2.0 credentials alive",
		Long: `spotoken keeps Spotify OAuth 2.0 credentials alive for the apps and services
that act on a Spotify user's behalf: it authorizes users (Authorization Code,
with PKCE for public clients), stores their tokens sealed at rest, refreshes
them before they expire, and vends fresh access tokens to your services.

Every flag can also be set with an environment variable SPOTOKEN_<FLAG>, for
example SPOTOKEN_ADDR=127.0.0.1:9000; a flag given on the command line wins.

Exit status: 0 success, 1 failure, 2 usage error, 4 a login is needed (token,
status --profile: the message says which 'spotoken login' to run).

Shell completion: see 'spotoken completion --help'.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return flagsFromEnv(cmd) },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().Bool("json", false, "machine-readable output: JSON on standard output, with stable snake_case field names")
	root.AddCommand(newEmulatorCmd(ios), newKeysCmd(ios), newServeCmd(ios), newDemoCmd(ios), newAppsCmd(ios), newAPIKeysCmd(ios), newConnectionsCmd(ios), newAuditCmd(ios),
		newLoginCmd(ios), newTokenCmd(ios), newStatusCmd(ios), newLogoutCmd(ios), newVersionCmd(ios), newBackupCmd(ios), newDoctorCmd(ios))
	root.AddCommand(newAdminsCmd(ios), newWebhooksCmd(ios))
	return root
}

// flagsFromEnv sets every flag not given on the command line from
// SPOTOKEN_<FLAG> (upper case, dashes as underscores). A repeatable flag's
// variable holds its values separated by spaces. A variable set to the empty
// string counts as unset.
func flagsFromEnv(cmd *cobra.Command) error {
	var firstErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, noEnv := f.Annotations[noEnvAnnotation]; f.Changed || firstErr != nil || noEnv {
			return
		}
		name := "SPOTOKEN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := os.Getenv(name)
		if v == "" { // unset, or set to nothing: the flag's default
			return
		}
		values := []string{v}
		if _, repeatable := f.Value.(pflag.SliceValue); repeatable {
			values = strings.Fields(v)
		}
		for _, one := range values {
			if err := f.Value.Set(one); err != nil {
				firstErr = usageError{fmt.Errorf("environment variable %s: %w", name, err)}
				return
			}
		}
		f.Changed = true
	})
	return firstErr
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}
