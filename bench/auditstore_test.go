package bench_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// BenchmarkAuditAppend measures the SQLite store's batch write of audit
// records (AppendAudit, the trail's write), a batch of 10,000 vend records
// per iteration, spread over conns connections in turn, on one file that
// grows over the iterations (-benchtime 40x writes 400,000). us/record is
// the write's wall time per record (the store is the only thing running);
// vs-one-conn divides it by the conns=1 case's, measured first in the same
// run. One connection is the trail's best case (its records in one run);
// a thousand in turn is a busy app's; a hundred thousand is every record of
// a batch a different connection, as in a sweep of distinct connections.
// conns=1000/batch=50x20 writes batches as the trail hands them to the
// store (audit.Config.BatchSize 1,000): records clustered by connection,
// 20 for each of 50; batch=500x20 the same in batches of 10,000.
// The connections come in a scrambled order (n·7919 mod conns), as a
// sweep's do: in key order, a batch's index entries would share leaves,
// which at 100,000 flattered the write 4-5× (docs/BENCHMARKS.md).
func BenchmarkAuditAppend(b *testing.B) {
	var one float64
	for _, c := range []struct {
		conns, batch, run int // run: records of a connection in a row, 1 for connections in turn
	}{{1, 10000, 1}, {1000, 10000, 1}, {100000, 10000, 1}, {1000, 1000, 20}, {1000, 10000, 20}} {
		name := fmt.Sprintf("conns=%d", c.conns)
		if c.run > 1 {
			// As the trail hands a batch to the store: 1,000 records,
			// clustered by connection, 20 for each of 50 connections.
			name = fmt.Sprintf("conns=%d/batch=%dx%d", c.conns, c.batch/c.run, c.run)
		}
		conns, batch, run := c.conns, c.batch, c.run
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{5}}}, 1)
			if err != nil {
				b.Fatal(err)
			}
			store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "audit.db"), Keys: keys})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
			recs := make([]spotoken.AuditRecord, batch)
			n := 0
			var longest time.Duration
			cpu0, cpuOK := processCPU()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for i := range recs {
					recs[i] = spotoken.AuditRecord{At: t0.Add(time.Duration(n) * 50 * time.Microsecond), Action: spotoken.AuditTokenVend,
						AppID: "playlist-sync", ConnectionID: fmt.Sprintf("user-%08d", n/run*7919%conns), ActorType: spotoken.ActorAPIKey,
						ActorID: "key_AbCdEfGhIjKl", ActorLabel: "sync worker (sk_AbCd12…)", ClientIP: "10.1.2.3",
						UserAgent: "sync-worker/2.1 Go-http-client/1.1", RequestID: fmt.Sprintf("%016x", n), Method: "POST",
						Route: "/v1/connections/{id}/token", Status: 200, Outcome: "ok",
						Fingerprint: "hmac-sha256:1:5d41402abc4b2a76b9719d911017c592ae5f8b7b0e6c1d4d7a2f3e4b5c6d7e8f"}
					n++
				}
				b.StartTimer()
				start := time.Now()
				if err := store.AppendAudit(ctx, recs...); err != nil {
					b.Fatal(err)
				}
				longest = max(longest, time.Since(start))
			}
			b.StopTimer()
			per := float64(b.Elapsed().Microseconds()) / float64(b.N*batch)
			b.ReportMetric(per, "us/record")
			// The store indexes the trail's groups on a goroutine of its
			// own (sqlite/auditindex.go), beside the batch writes: the
			// process's CPU counts that work too, but for an indexing
			// still under way when the last batch is written.
			if cpu1, ok := processCPU(); ok && cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N*batch), "cpu-us/record")
			}
			// The longest batch, the one that indexed the tail when one
			// did (sqlite.Config.AuditIndexEvery): how long the writer
			// was held at once.
			b.ReportMetric(float64(longest.Microseconds())/1000, "max-batch-ms")
			if conns == 1 {
				one = per
			} else if one > 0 {
				b.ReportMetric(per/one, "vs-one-conn")
			}
		})
	}
}
