package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
)

// TestTrailBatchesByConnection: the records of one pass reach the store
// with each connection's records together, in the order they came, the
// connections in the order of their first record; none lost or doubled.
func TestTrailBatchesByConnection(t *testing.T) {
	st := &flakyStore{}
	tr, err := audit.New(audit.Config{Store: st, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	conns := []string{"c3", "c1", "c2", "c1", "c3", "c3", "c0", "c2", "c1", "c3", "c0", "c1"}
	for i, c := range conns {
		app := "a"
		if i%5 == 4 {
			app = "b" // the same connection name in another app is another connection
		}
		tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: app, ConnectionID: c, RequestID: fmt.Sprint(i)})
	}
	if _, err := tr.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range st.records {
		got = append(got, r.AppID+"/"+r.ConnectionID+"#"+r.RequestID)
	}
	want := []string{"a/c3#0", "a/c3#5", "a/c1#1", "a/c1#3", "a/c1#8", "a/c1#11", "a/c2#2", "a/c2#7", "b/c3#4", "b/c3#9", "a/c0#6", "a/c0#10"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records reached the store as\n %v\nwant\n %v", got, want)
	}
}

// TestTrailWakesWhenHalfFull: with a flush interval of an hour, Run
// writes the queue once it is half full, so a high rate does not
// overflow a queue sized for less than an interval's records.
func TestTrailWakesWhenHalfFull(t *testing.T) {
	st := &flakyStore{}
	tr, err := audit.New(audit.Config{Store: st, FlushInterval: time.Hour, QueueSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := contextWithCancel()
	done := make(chan error)
	go func() { done <- tr.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	for i := range 49 {
		tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend, RequestID: fmt.Sprint(i)})
	}
	if n := tr.Stats().Written; n != 0 {
		t.Fatalf("%d records written before the queue was half full", n)
	}
	tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend, RequestID: "50th"})
	// Not a timing threshold: the hour-long interval cannot pass, so only
	// the wake can write them; the wait only bounds a failing test.
	deadline := time.Now().Add(time.Minute)
	for tr.Stats().Written < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("half the queue recorded, a minute later: %+v", tr.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
