package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/audit"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
)

// fingerprintPurpose names the key the audit fingerprints are made with,
// derived from each sealing key (seal.KeyRing.DeriveKey).
const fingerprintPurpose = "spotoken audit fingerprint v1"

// fingerprinter derives the audit trail's fingerprint keys from ring.
func fingerprinter(ring *seal.KeyRing) (*audit.Fingerprinter, error) {
	keys := map[uint32][]byte{}
	for _, v := range ring.Versions() {
		k, err := ring.DeriveKey(v, fingerprintPurpose)
		if err != nil {
			return nil, err
		}
		keys[v] = k
	}
	return audit.NewFingerprinter(keys, ring.Primary()), nil
}

// loadFingerprinter loads the key ring of the database o names and returns
// its fingerprinter.
func (o *storeOptions) loadFingerprinter(log *slog.Logger) (*audit.Fingerprinter, error) {
	db := o.DB
	if db == "" {
		db = defaultDBPath()
	}
	ring, err := o.keyRing(log, db, false)
	if err != nil {
		return nil, err
	}
	return fingerprinter(ring)
}

// auditOptions are serve's flags for the audit trail and its detectors.
type auditOptions struct {
	Enabled        bool
	TrustedProxies []string
	Retention      time.Duration
	Queue          int
	d              audit.Detectors
}

func (o *auditOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.Enabled, "audit", true, "keep the audit trail (who used which token) and run its detectors; --audit=false turns both off")
	f.StringSliceVar(&o.TrustedProxies, "trusted-proxies", nil, "proxies (CIDR prefixes or addresses, comma-separated) whose X-Forwarded-For names the client; without them X-Forwarded-For is ignored")
	f.DurationVar(&o.Retention, "audit-retention", audit.DefaultRetention, "keep audit records this long (0: for ever)")
	f.IntVar(&o.Queue, "audit-queue", audit.DefaultQueueSize, "audit records that may wait to be written; past it they are dropped and counted, never waited for")
	f.DurationVar(&o.d.NewNetworkLearning, "audit-learning", 24*time.Hour, "an API key's networks seen within this long of its first use are learned without an alert")
	f.DurationVar(&o.d.UsageWindow, "audit-usage-window", 5*time.Minute, "window in which a connection's vends and proxied calls are counted")
	f.Float64Var(&o.d.UsageFactor, "audit-usage-factor", 10, "alert when a connection's count in a window reaches this many times its recent peak")
	f.IntVar(&o.d.UsageMin, "audit-usage-min", 100, "... and at least this many")
	f.DurationVar(&o.d.ReauthWindow, "audit-reauth-window", time.Hour, "window of the needs_reauth surge detector")
	f.IntVar(&o.d.ReauthMin, "audit-reauth-min", 10, "alert when at least this many of an app's connections move to needs_reauth within the window")
	f.Float64Var(&o.d.ReauthFraction, "audit-reauth-fraction", 0.1, "... and at least this fraction of them")
	f.IntVar(&o.d.AuthFailures, "auth-failures", 20, "failed authentications from one address (IPv6: /64) within --auth-window that put it under the limit")
	f.DurationVar(&o.d.AuthWindow, "auth-window", 10*time.Minute, "window of --auth-failures")
	f.DurationVar(&o.d.AuthBlock, "auth-block", 15*time.Minute, "how long an address over the limit is refused (429 with Retry-After)")
}

func (o *auditOptions) validate() error {
	if _, err := server.ParseTrustedProxies(o.TrustedProxies); err != nil {
		return usageError{fmt.Errorf("--trusted-proxies: %w", err)}
	}
	switch {
	case o.Retention < 0:
		return usageError{errors.New("--audit-retention must be 0 (for ever) or positive")}
	case o.Queue < 1:
		return usageError{errors.New("--audit-queue must be at least 1")}
	case o.d.UsageFactor <= 1:
		return usageError{errors.New("--audit-usage-factor must be more than 1")}
	case o.d.ReauthFraction <= 0 || o.d.ReauthFraction > 1:
		return usageError{errors.New("--audit-reauth-fraction must be above 0 and at most 1")}
	case o.d.NewNetworkLearning <= 0 || o.d.UsageWindow <= 0 || o.d.ReauthWindow <= 0 || o.d.AuthWindow <= 0 || o.d.AuthBlock <= 0:
		return usageError{errors.New("the --audit-* and --auth-* durations must be positive")}
	case o.d.UsageMin < 1 || o.d.ReauthMin < 1 || o.d.AuthFailures < 1:
		return usageError{errors.New("--audit-usage-min, --audit-reauth-min and --auth-failures must be at least 1")}
	}
	return nil
}

// newTrail builds serve's audit trail, or nil when it is off.
func (o *auditOptions) newTrail(store spotoken.Store, storeOpts *storeOptions, now func() time.Time, log *slog.Logger) (*audit.Trail, []netip.Prefix, error) {
	trusted, err := server.ParseTrustedProxies(o.TrustedProxies)
	if err != nil || !o.Enabled {
		return nil, trusted, err
	}
	fp, err := storeOpts.loadFingerprinter(log)
	if err != nil {
		return nil, nil, err
	}
	retention := o.Retention
	if retention == 0 {
		retention = -1
	}
	t, err := audit.New(audit.Config{Store: store, Now: now, Logger: log.With("component", "audit"), Fingerprints: fp,
		QueueSize: o.Queue, Retention: retention, Detectors: o.d})
	return t, trusted, err
}

// observe feeds the refresh engine's outcomes to the trail's detectors.
func observe(t *audit.Trail) func(refresh.Outcome) {
	if t == nil {
		return nil
	}
	return func(o refresh.Outcome) {
		if o.Rotated {
			t.Rotated(o.Key, o.At, o.ConsentedAt)
		} else if o.NeedsReauth != "" {
			t.NeedsReauth(o.Key, o.NeedsReauth, o.At, o.ConsentedAt, o.GrantExpiresAt)
		}
	}
}

// auditor is t as the server's Auditor: a nil interface when t is nil.
func auditor(t *audit.Trail) (server.Auditor, func() spotoken.AuditStats) {
	if t == nil {
		return nil, nil
	}
	return t, t.Stats
}

// adminActor names the operator running a CLI command: the OS user and host.
func adminActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// adminAudit returns ctx carrying the record of an admin change made with
// the CLI, for the store write that makes it (fail closed: no record, no
// change).
func adminAudit(ctx context.Context, action spotoken.AuditAction, app, conn string, detail map[string]string) context.Context {
	return spotoken.WithAudit(ctx, adminRecord(action, app, conn, detail))
}

// auditAdminChanges logs the changes package admin makes (CLI and admin
// API), and records in the audit trail those it reports made elsewhere
// (a connection refreshed or sent a connect link through the admin API):
// the service's own changes have their record written in the change's
// transaction (admin.Config.Audit), a deletion with the deletion. on false
// leaves them to the log line alone.
func auditAdminChanges(store spotoken.AuditStore, log *slog.Logger, on bool) func(context.Context, admin.Change) {
	return func(ctx context.Context, c admin.Change) {
		attrs := []any{"action", c.Action, "actor_kind", c.Actor.Kind, "actor", c.Actor.Name, "app", c.AppID, "target", c.Target}
		log.InfoContext(ctx, "admin change", attrs...)
		if !on || c.Recorded || c.Action == admin.ActionConnectionDelete {
			return
		}
		if err := store.AppendAudit(context.WithoutCancel(ctx), c.AuditRecord()); err != nil {
			log.ErrorContext(ctx, "audit: recording an admin change failed", "action", c.Action, "err", err)
		}
	}
}

func adminRecord(action spotoken.AuditAction, app, conn string, detail map[string]string) spotoken.AuditRecord {
	return spotoken.AuditRecord{Version: spotoken.AuditVersion, At: time.Now(), Action: action, AppID: app, ConnectionID: conn,
		ActorType: spotoken.ActorAdmin, ActorID: adminActor(), ActorLabel: "cli", Outcome: "ok", Detail: detail}
}

func newAuditCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit trail: who used which token, and the detectors' alerts",
		Long: `Read the audit trail that 'spotoken serve' keeps: one record per token vend,
proxied call, connect, re-consent, deletion, API-key and admin action, with
when, which app, connection and credential, the client's address and user
agent, and the outcome. Secrets appear only as fingerprints
(hmac-sha256:VERSION:HEX); 'spotoken audit fingerprint' computes them for a
known value so the trail can be searched for it. See docs/audit.md.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAuditListCmd(ios), newAuditExportCmd(ios), newAuditFingerprintCmd(ios))
	return cmd
}

type auditListOptions struct {
	store            storeOptions
	App, Connection  string
	Since, Until     string
	After            string
	Limit            int
	Newest, JSONOnly bool
}

func (o *auditListOptions) addFlags(f *pflag.FlagSet) {
	o.store.addFlags(f)
	f.StringVar(&o.App, "app", "", "only this app's records")
	f.StringVar(&o.Connection, "connection", "", "only this connection's records (needs --app)")
	f.StringVar(&o.Since, "since", "", "only records at or after this time (RFC 3339, or a duration ago such as 24h)")
	f.StringVar(&o.Until, "until", "", "only records before this time (RFC 3339, or a duration ago)")
	f.StringVar(&o.After, "after", "", "continue after this cursor (printed at the end of the previous page or export)")
}

// filter builds the store's filter from the flags.
func (o *auditListOptions) filter(now time.Time) (spotoken.AuditFilter, error) {
	f := spotoken.AuditFilter{AppID: o.App, ConnectionID: o.Connection, Newest: o.Newest, Limit: o.Limit}
	if o.Connection != "" && o.App == "" {
		return f, usageError{errors.New("--connection needs --app")}
	}
	var err error
	if f.Since, err = auditTime("--since", o.Since, now); err != nil {
		return f, err
	}
	if f.Until, err = auditTime("--until", o.Until, now); err != nil {
		return f, err
	}
	if o.After != "" {
		if f.After, err = server.ParseAuditCursor(o.After); err != nil {
			return f, usageError{fmt.Errorf("--after: %w", err)}
		}
	}
	return f, nil
}

// auditTime reads a --since or --until value: RFC 3339, or a duration
// before now.
func auditTime(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("%s: %q is neither an RFC 3339 time (2026-07-01T12:00:00Z) nor a duration (24h)", flag, v)}
	}
	return t, nil
}

func newAuditListCmd(ios *IOStreams) *cobra.Command {
	opts := &auditListOptions{}
	cmd := &cobra.Command{
		Use:   "list [--app NAME [--connection ID]] [--since T] [--until T] [--limit N] [--oldest]",
		Short: "List audit records, newest first",
		Long: `List audit records, newest first (--oldest: oldest first), a page of --limit at a
time; the cursor of the next page is printed last (on standard error, or
as a {"next_cursor": ...} line with --json). With --json every record is one
JSON line (the format of docs/audit.md, version "v").`,
		Example: `  spotoken audit list --app playlist-sync --connection user-42 --since 24h
  spotoken audit list --app playlist-sync --json | jq 'select(.action == "token.vend")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			oldest, _ := cmd.Flags().GetBool("oldest")
			opts.Newest = !oldest
			return auditListRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	opts.addFlags(cmd.Flags())
	cmd.Flags().IntVar(&opts.Limit, "limit", 50, "records per page (1 to 1000)")
	cmd.Flags().Bool("oldest", false, "oldest first")
	return cmd
}

func auditListRun(ctx context.Context, ios *IOStreams, opts *auditListOptions, asJSON bool) error {
	if opts.Limit < 1 || opts.Limit > 1000 {
		return usageError{errors.New("--limit must be from 1 to 1000")}
	}
	filter, err := opts.filter(time.Now())
	if err != nil {
		return err
	}
	want := filter.Limit
	filter.Limit++
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		recs, err := store.AuditRecords(ctx, filter)
		if err != nil {
			return fmt.Errorf("read the audit trail: %w", err)
		}
		next := ""
		if len(recs) > want {
			last := recs[want-1]
			next = server.FormatAuditCursor(spotoken.AuditCursor{At: last.At, ID: last.ID})
			recs = recs[:want]
		}
		if asJSON {
			enc := json.NewEncoder(ios.Out)
			for _, r := range recs {
				if err := enc.Encode(server.NewAuditRecordView(r)); err != nil {
					return err
				}
			}
			if next != "" {
				return enc.Encode(map[string]string{"next_cursor": next})
			}
			return nil
		}
		tw := newTable(ios.Out)
		fmt.Fprintln(tw, "TIME\tACTION\tAPP\tCONNECTION\tWHO\tFROM\tROUTE\tSTATUS\tOUTCOME")
		for _, r := range recs {
			who := r.ActorType
			if r.ActorID != "" {
				who += ":" + r.ActorID
			}
			status := "-"
			if r.Status != 0 {
				status = fmt.Sprint(r.Status)
				if r.UpstreamStatus != 0 {
					status += fmt.Sprintf(" (Spotify %d)", r.UpstreamStatus)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.At.UTC().Format(time.RFC3339), r.Action, dash(r.AppID),
				dash(r.ConnectionID), who, dash(r.ClientIP), dash(r.Route), status, dash(r.Outcome))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(ios.Err, "More records: --after %s\n", next)
		}
		return nil
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAuditExportCmd(ios *IOStreams) *cobra.Command {
	opts := &auditListOptions{}
	var settle time.Duration
	cmd := &cobra.Command{
		Use:   "export [--app NAME] [--since T] [--after CURSOR] [--settle 1m]",
		Short: "Export audit records as JSON lines, for a SIEM",
		Long: `Write audit records as JSON lines, oldest first, every one that matches (in
pages of 1000), for a SIEM or a log pipeline. The last line of standard
error names the cursor to pass as --after next time, so that a periodic
export picks up where the last one ended. Records younger than --settle
(default 1m) are left for the next export: replicas write records in
batches a second or so after the fact, and an export must not pass them by.`,
		Example: `  spotoken audit export --since 24h > audit.jsonl
  spotoken audit export --after 1782907200000000.4711 >> audit.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return auditExportRun(cmd.Context(), ios, opts, settle)
		},
	}
	opts.addFlags(cmd.Flags())
	cmd.Flags().DurationVar(&settle, "settle", time.Minute, "leave out records younger than this (they may still be arriving from other replicas)")
	return cmd
}

func auditExportRun(ctx context.Context, ios *IOStreams, opts *auditListOptions, settle time.Duration) error {
	if settle < 0 {
		return usageError{errors.New("--settle must not be negative")}
	}
	opts.Limit = 1000
	now := time.Now()
	filter, err := opts.filter(now)
	if err != nil {
		return err
	}
	if limit := now.Add(-settle); filter.Until.IsZero() || filter.Until.After(limit) {
		filter.Until = limit
	}
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		out := bufio.NewWriter(ios.Out)
		enc := json.NewEncoder(out)
		n := 0
		cursor := filter.After
		for {
			recs, err := store.AuditRecords(ctx, filter)
			if err != nil {
				return fmt.Errorf("read the audit trail: %w", err)
			}
			for _, r := range recs {
				if err := enc.Encode(server.NewAuditRecordView(r)); err != nil {
					return err
				}
				cursor = spotoken.AuditCursor{At: r.At, ID: r.ID}
			}
			n += len(recs)
			if len(recs) < filter.Limit {
				break
			}
			filter.After = cursor
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if cursor != (spotoken.AuditCursor{}) {
			fmt.Fprintf(ios.Err, "Exported %d records; next time: --after %s\n", n, server.FormatAuditCursor(cursor))
		} else {
			fmt.Fprintf(ios.Err, "Exported %d records.\n", n)
		}
		return nil
	})
}

func newAuditFingerprintCmd(ios *IOStreams) *cobra.Command {
	opts := &storeOptions{}
	cmd := &cobra.Command{
		Use:   "fingerprint < SECRET",
		Short: "Fingerprint a known secret, to search the audit trail for it",
		Long: `Read a secret (an access token, say) from standard input and print its
fingerprints, as the audit trail stores them: one per key version of the key
file, newest first (records written before a key rotation carry an older
version's). The secret is read from standard input, never from the command
line, where other users and the shell history would see it.`,
		Example: `  spotoken audit fingerprint < leaked-token.txt
  spotoken audit list --app playlist-sync --json | grep -F "$(spotoken audit fingerprint < leaked-token.txt | head -1)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fp, err := opts.loadFingerprinter(adminLogger(ios))
			if err != nil {
				return err
			}
			secret, err := readKnownSecret(ios.In)
			if err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return writeJSON(ios.Out, map[string][]string{"fingerprints": fp.All(secret)})
			}
			for _, f := range fp.All(secret) {
				fmt.Fprintln(ios.Out, f)
			}
			return nil
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

// readKnownSecret reads the value to fingerprint: at most 16 KiB, one
// trailing newline trimmed. It never appears in an error.
func readKnownSecret(r io.Reader) (spotoken.Secret, error) {
	b, err := io.ReadAll(io.LimitReader(r, 16<<10+1))
	if err != nil {
		return "", fmt.Errorf("read the value from standard input: %w", err)
	}
	if len(b) > 16<<10 {
		return "", usageError{errors.New("the value on standard input is longer than 16 KiB")}
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(b) == 0 {
		return "", usageError{errors.New("give the value to fingerprint on standard input")}
	}
	return spotoken.Secret(b), nil
}
