package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
)

// versionInfo is what 'spotoken version' reports, from the build
// information the Go toolchain embeds in the binary.
type versionInfo struct {
	// Version is the module version: v1.2.3 for 'go install ...@v1.2.3',
	// a pseudo-version for a commit, "(devel)" for a build from a checkout.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, when the build
	// was made in a checkout (go build stamps it); Time is that commit's
	// time and Modified whether the checkout had uncommitted changes.
	Revision  string     `json:"revision,omitempty"`
	Time      *time.Time `json:"revision_time,omitempty"`
	Modified  bool       `json:"modified"`
	GoVersion string     `json:"go_version"`
	Platform  string     `json:"platform"`
}

// readVersion reads the binary's build information.
func readVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(bi)
}

// versionFrom extracts the version from bi (nil: none recorded).
func versionFrom(bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				v.Time = &t
			}
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// short is the one-line form: version, revision and its state.
func (v versionInfo) short() string {
	s := "spotoken " + v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (" + rev
		if v.Time != nil {
			s += ", " + v.Time.UTC().Format(time.RFC3339)
		}
		if v.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + v.GoVersion + " " + v.Platform
}

func newVersionCmd(ios *IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print spotoken's version and the commit it was built from",
		Long: `Print the module version of this binary (v1.2.3 when installed with
'go install github.com/spotoken/spotoken/cmd/spotoken@v1.2.3', a
pseudo-version for a commit, "(devel)" for a build from a checkout), the VCS
revision it was built from (with its time, and "modified" when the checkout
had uncommitted changes), the Go version and the platform. All of it comes
from the build information the Go toolchain embeds in the binary.

With --json: {"version", "revision", "revision_time", "modified",
"go_version", "platform"}; revision and revision_time are left out when the
build recorded none.`,
		Example: `  spotoken version
  spotoken version --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := readVersion()
			if jsonOutput(cmd) {
				return writeJSON(ios.Out, v)
			}
			_, err := fmt.Fprintln(ios.Out, v.short())
			return err
		},
	}
}
