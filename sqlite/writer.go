package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"

	"github.com/spotoken/spotoken"
)

// The writer
//
// Every write of this process goes through one connection (SQLite has one
// writer per file), so writes queue for it. database/sql hands a freed
// connection to a waiter picked at random, which puts a caller's write
// (an on-demand refresh's lease and commit, a connect, a re-consent link)
// behind whatever background work is queued: the scheduler's refreshes,
// the batched last-use and audit writes. Under a refresh backlog callers
// then waited seconds, some past --db-timeout (docs/BENCHMARKS.md, "A
// million connections"). So writes pass a gate first, writerGate, which
// lets one through at a time: the foreground's first, in arrival order,
// then the background's (spotoken.Background marks them), in arrival
// order. The gate is in front of the pool, so the pool's connection is
// free whenever the gate lets a write through.
//
// Background writes are not starved: after maxForegroundRun foreground
// writes in a row while a background one waits, the background's oldest
// goes next.

// maxForegroundRun is how many foreground writes may pass in a row while
// a background write waits.
const maxForegroundRun = 8

// writerGate admits one writer at a time, foreground first.
type writerGate struct {
	mu     sync.Mutex
	busy   bool
	fg, bg []chan struct{} // waiting, oldest first; closed when let in
	run    int             // foreground writes let in in a row while a background one waited
	// admitted, if set, is told of each write let in, under mu (tests).
	admitted func(background bool)
}

// enter waits until the gate lets the caller in, or ctx is done. A caller
// let in must call leave.
func (g *writerGate) enter(ctx context.Context, background bool) error {
	g.mu.Lock()
	if !g.busy {
		g.busy = true
		g.tell(background)
		g.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if background {
		g.bg = append(g.bg, ch)
	} else {
		g.fg = append(g.fg, ch)
	}
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-ch: // let in meanwhile: pass it on
		g.mu.Unlock()
		g.leave()
	default:
		if background {
			g.bg = remove(g.bg, ch)
		} else {
			g.fg = remove(g.fg, ch)
		}
		g.mu.Unlock()
	}
	return ctx.Err()
}

// leave lets the next waiter in, or opens the gate.
func (g *writerGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case len(g.fg) > 0 && (len(g.bg) == 0 || g.run < maxForegroundRun):
		if len(g.bg) > 0 {
			g.run++
		}
		g.tell(false)
		close(g.fg[0])
		g.fg = g.fg[1:]
	case len(g.bg) > 0:
		g.run = 0
		g.tell(true)
		close(g.bg[0])
		g.bg = g.bg[1:]
	default:
		g.busy = false
	}
}

// waiting returns how many writes wait at the gate (tests).
func (g *writerGate) waiting() (foreground, background int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fg), len(g.bg)
}

func (g *writerGate) tell(background bool) {
	if g.admitted != nil {
		g.admitted(background)
	}
}

func remove(q []chan struct{}, ch chan struct{}) []chan struct{} {
	for i, c := range q {
		if c == ch {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

// write runs fn in a write transaction (BEGIN IMMEDIATE on the one writer
// connection, through the gate) and commits it, synchronous=FULL, if fn
// returns nil. fn's error is returned as it is. The audit records attached
// to ctx (spotoken.WithAudit) are stored in the same transaction, so the
// change commits with them or not at all.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.writeTx(ctx, true, fn)
}

// writeLease is write for a transaction that changes only a lease (take,
// renew, release): it commits with synchronous=NORMAL, which does not wait
// for the disk. In WAL mode such a commit survives the process's crash,
// not a power cut or an operating-system crash until the next commit that
// waits for the disk (any other write). That loses nothing a lease
// protects: a lease lost in a power cut belonged to a process that died
// with it, and the refresh it covered either committed (synchronous=FULL,
// which also makes every earlier commit durable) or did not and will be
// done again. The lease's owner then finds it gone, exactly as after its
// expiry. A refresh's commit, which may store a rotated refresh token,
// stays synchronous=FULL.
func (db *DB) writeLease(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.writeTx(ctx, false, fn)
}

func (db *DB) writeTx(ctx context.Context, full bool, fn func(tx *sql.Tx) error) (err error) {
	if err := db.gate.enter(ctx, spotoken.IsBackground(ctx)); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer db.gate.leave()
	var tx *sql.Tx
	if full {
		if tx, err = db.w.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
	} else {
		conn, err := db.w.Conn(ctx)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn }) // discard it: its setting is unknown
			return fmt.Errorf("begin: synchronous: %w", err)
		}
		defer func() {
			// Put FULL back before the connection serves another write,
			// or discard the connection.
			if _, serr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL"); serr != nil {
				conn.Raw(func(any) error { return driver.ErrBadConn })
				err = errors.Join(err, fmt.Errorf("synchronous: %w", serr))
			}
		}()
		if tx, err = conn.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if records := spotoken.AuditFromContext(ctx); len(records) > 0 {
		if err := db.insertAudit(ctx, tx, db.now(), records); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// gatedConn is the writer connection held for one caller, through the
// gate; Close returns it and lets the next writer in.
type gatedConn struct {
	*sql.Conn
	db *DB
}

// Close returns the connection to the pool and leaves the gate.
func (c gatedConn) Close() error {
	err := c.Conn.Close()
	c.db.gate.leave()
	return err
}

// writerConn takes the writer connection through the gate, for a caller
// that runs its own transaction on it (AppendAudit). Close it when done.
func (db *DB) writerConn(ctx context.Context) (gatedConn, error) {
	if err := db.gate.enter(ctx, spotoken.IsBackground(ctx)); err != nil {
		return gatedConn{}, err
	}
	conn, err := db.w.Conn(ctx)
	if err != nil {
		db.gate.leave()
		return gatedConn{}, err
	}
	return gatedConn{Conn: conn, db: db}, nil
}

// backgroundNormalWrite runs fn on the writer's driver connection, as
// background work (after callers' writes) and with synchronous=NORMAL
// (withNormalSync): MarkUsed's uses and the audit indexing's chunks, each
// statement of fn its own transaction, which SQLite keeps no statement
// journal for.
func (db *DB) backgroundNormalWrite(ctx context.Context, fn func(c rawConn) error) error {
	conn, err := db.writerConn(spotoken.Background(ctx))
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error { return withNormalSync(ctx, dc, fn) })
}

// rawConn is what backgroundNormalWrite's work needs of the driver's connection.
type rawConn interface {
	driver.ExecerContext
	driver.ConnPrepareContext
}

// withNormalSync runs fn on the driver connection dc with
// synchronous=NORMAL, and puts FULL back after it; if either pragma fails
// it answers driver.ErrBadConn too, so that database/sql discards the
// connection rather than hand on one whose setting is unknown.
func withNormalSync(ctx context.Context, dc any, fn func(c rawConn) error) (err error) {
	c, ok := dc.(rawConn)
	if !ok {
		return fmt.Errorf("the driver's connection (%T) cannot run statements", dc)
	}
	if _, err := c.ExecContext(ctx, "PRAGMA synchronous = NORMAL", nil); err != nil {
		return errors.Join(fmt.Errorf("synchronous: %w", err), driver.ErrBadConn)
	}
	defer func() {
		if _, serr := c.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL", nil); serr != nil {
			err = errors.Join(err, fmt.Errorf("synchronous: %w", serr), driver.ErrBadConn)
		}
	}()
	return fn(c)
}
