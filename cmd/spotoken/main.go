// Command spotoken keeps Spotify OAuth 2.0 credentials alive for the apps and
// services that act on a Spotify user's behalf.
//
// This is the only package that builds concrete types and wires them
// together; everything it runs lives in the module's library packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "spotoken:", err)
	var nl needsLoginError
	if errors.As(err, &nl) {
		return exitNeedsLogin
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintln(stderr, "Run 'spotoken --help' for usage.")
		return exitUsage
	}
	return exitFailure
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
		newLoginCmd(ios), newTokenCmd(ios), newStatusCmd(ios), newLogoutCmd(ios))
	return root
}

// flagsFromEnv sets every flag not given on the command line from
// SPOTOKEN_<FLAG> (upper case, dashes as underscores). A repeatable flag's
// variable holds its values separated by spaces.
func flagsFromEnv(cmd *cobra.Command) error {
	var firstErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil {
			return
		}
		name := "SPOTOKEN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
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
