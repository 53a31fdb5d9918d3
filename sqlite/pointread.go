package sqlite

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/spotoken/spotoken"
)

// pointReader reads one connection by key, the read of every vend that
// misses the refresh engine's memory, on connections of its own through
// SQLite's C API (modernc.org/sqlite/lib) rather than database/sql.
//
// Through database/sql the read cost more around SQLite than in it: the
// driver names and types the 22 columns of every result anew (44 strings),
// looks up each parameter's name, starts a goroutine per query to watch
// the context and database/sql another per result, and every column is
// converted through interfaces. Here one statement, prepared once per
// connection, is bound, stepped and read straight into the Connection, and
// the key's strings are reused for its key columns.
//
// Each connection is used by one goroutine at a time (taken from idle),
// so SQLite's own mutexes are off (SQLITE_OPEN_NOMUTEX). The read is one
// search of the primary key and one of the table: it is not interrupted by
// the context, which is checked before it.
type pointReader struct {
	idle   chan *rawReader
	all    []*rawReader
	closed chan struct{} // closed by close: reads fail from then on
	once   sync.Once
}

// errClosed answers a read after the store was closed.
var errClosed = errors.New("sqlite: the store is closed")

// rawReader is one connection of a pointReader, with its prepared
// statement and a buffer in C memory for the key it binds.
type rawReader struct {
	cconn
	stmt   uintptr
	key    uintptr
	keyCap int
}

// cconn is a connection to the database file through SQLite's C API, used
// by one goroutine at a time (SQLITE_OPEN_NOMUTEX).
type cconn struct {
	tls *libc.TLS
	db  uintptr
}

// openPointReader opens n connections to the database file at path with
// the readers' settings (query_only, busy timeout, page cache and mmap).
func openPointReader(path string, n int, cacheSize, mmapSize int64) (p *pointReader, err error) {
	p = &pointReader{idle: make(chan *rawReader, n), closed: make(chan struct{})}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	for range n {
		r := &rawReader{cconn: cconn{tls: libc.NewTLS()}}
		if err := r.open(path, cacheSize, mmapSize); err != nil {
			r.close()
			return nil, err
		}
		p.all = append(p.all, r)
		p.idle <- r
	}
	return p, nil
}

func (r *rawReader) open(path string, cacheSize, mmapSize int64) error {
	pragmas := fmt.Sprintf("PRAGMA busy_timeout = %d; PRAGMA query_only = 1; PRAGMA cache_size = -%d; PRAGMA mmap_size = %d;",
		busyTimeout, max(1, cacheSize>>10), mmapSize)
	if err := r.cconn.open(path, pragmas); err != nil {
		return err
	}
	var err error
	r.stmt, err = r.prepare(connectionQuery)
	return err
}

// open opens the database file at path and runs pragmas on it. Call
// close even when it fails.
func (r *cconn) open(path, pragmas string) error {
	name, err := libc.CString(path)
	if err != nil {
		return err
	}
	defer libc.Xfree(r.tls, name)
	pdb := libc.Xmalloc(r.tls, ptrSize)
	if pdb == 0 {
		return errors.New("out of memory")
	}
	defer libc.Xfree(r.tls, pdb)
	rc := sqlite3.Xsqlite3_open_v2(r.tls, name, pdb, sqlite3.SQLITE_OPEN_READWRITE|sqlite3.SQLITE_OPEN_NOMUTEX, 0)
	r.db = loadPtr(pdb)
	if rc != sqlite3.SQLITE_OK {
		return r.errorf("open", rc)
	}
	return r.exec(pragmas)
}

// prepare prepares the statement q, to be kept (and finalized by its
// owner before close).
func (r *cconn) prepare(q string) (uintptr, error) {
	cq, err := libc.CString(q)
	if err != nil {
		return 0, err
	}
	defer libc.Xfree(r.tls, cq)
	pstmt := libc.Xmalloc(r.tls, ptrSize)
	if pstmt == 0 {
		return 0, errors.New("out of memory")
	}
	defer libc.Xfree(r.tls, pstmt)
	if rc := sqlite3.Xsqlite3_prepare_v3(r.tls, r.db, cq, -1, sqlite3.SQLITE_PREPARE_PERSISTENT, pstmt, 0); rc != sqlite3.SQLITE_OK {
		return 0, r.errorf("prepare", rc)
	}
	return loadPtr(pstmt), nil
}

func (r *cconn) exec(sql string) error {
	s, err := libc.CString(sql)
	if err != nil {
		return err
	}
	defer libc.Xfree(r.tls, s)
	if rc := sqlite3.Xsqlite3_exec(r.tls, r.db, s, 0, 0, 0); rc != sqlite3.SQLITE_OK {
		return r.errorf("exec", rc)
	}
	return nil
}

// errorf describes SQLite's error rc after op, with the connection's
// message and extended code when it has them.
func (r *cconn) errorf(op string, rc int32) error {
	e := &cError{op: op, code: int(rc), msg: libc.GoString(sqlite3.Xsqlite3_errstr(r.tls, rc))}
	if r.db != 0 {
		e.msg = libc.GoString(sqlite3.Xsqlite3_errmsg(r.tls, r.db))
		if ext := sqlite3.Xsqlite3_extended_errcode(r.tls, r.db); ext&0xff == rc&0xff {
			e.code = int(ext)
		}
	}
	return e
}

// cError is an error of SQLite's C API: translate reads its code as it
// reads the driver's (*sqlite.Error).
type cError struct {
	op, msg string
	code    int
}

func (e *cError) Error() string { return fmt.Sprintf("sqlite: %s: %s (%d)", e.op, e.msg, e.code) }

// Code is SQLite's (extended) result code.
func (e *cError) Code() int { return e.code }

// close closes the connections, waiting for the reads in flight.
// Closing again does nothing.
func (p *pointReader) close() error {
	var err error
	p.once.Do(func() {
		close(p.closed)
		var errs []error
		for range p.all {
			errs = append(errs, (<-p.idle).close())
		}
		err = errors.Join(errs...)
	})
	return err
}

func (r *rawReader) close() error {
	if r.key != 0 {
		libc.Xfree(r.tls, r.key)
	}
	return r.cconn.close(r.stmt)
}

// close finalizes stmts (zero ones skipped), closes the connection and
// frees its thread state.
func (r *cconn) close(stmts ...uintptr) error {
	var err error
	for _, s := range stmts {
		if s != 0 {
			sqlite3.Xsqlite3_finalize(r.tls, s)
		}
	}
	if r.db != 0 {
		if rc := sqlite3.Xsqlite3_close_v2(r.tls, r.db); rc != sqlite3.SQLITE_OK {
			err = r.errorf("close", rc)
		}
	}
	r.tls.Close()
	return err
}

// read reads the connection with key and its ciphertexts; sql.ErrNoRows'
// counterpart is found == false.
func (p *pointReader) read(ctx context.Context, key spotoken.ConnectionKey) (c *spotoken.Connection, st sealedToken, found bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, st, false, err
	}
	var r *rawReader
	select {
	case <-p.closed:
		return nil, st, false, errClosed
	default:
	}
	select {
	case r = <-p.idle:
	case <-p.closed:
		return nil, st, false, errClosed
	case <-ctx.Done():
		return nil, st, false, ctx.Err()
	}
	defer func() { p.idle <- r }()
	return r.read(key)
}

func (r *rawReader) read(key spotoken.ConnectionKey) (c *spotoken.Connection, st sealedToken, found bool, err error) {
	tls, stmt := r.tls, r.stmt
	if n := len(key.AppID) + len(key.ID); n > r.keyCap || r.key == 0 {
		if r.key != 0 {
			libc.Xfree(tls, r.key)
		}
		r.keyCap = max(64, 2*n)
		if r.key = libc.Xmalloc(tls, libc.Tsize_t(r.keyCap)); r.key == 0 {
			return nil, st, false, errors.New("sqlite: out of memory")
		}
	}
	buf := libc.GoBytes(r.key, r.keyCap)
	copy(buf, key.AppID)
	copy(buf[len(key.AppID):], key.ID)
	// SQLITE_STATIC (0): the buffer outlives the statement's use of it.
	if rc := sqlite3.Xsqlite3_bind_text(tls, stmt, 1, r.key, int32(len(key.AppID)), 0); rc != sqlite3.SQLITE_OK {
		return nil, st, false, r.errorf("bind", rc)
	}
	if rc := sqlite3.Xsqlite3_bind_text(tls, stmt, 2, r.key+uintptr(len(key.AppID)), int32(len(key.ID)), 0); rc != sqlite3.SQLITE_OK {
		return nil, st, false, r.errorf("bind", rc)
	}
	defer sqlite3.Xsqlite3_reset(tls, stmt)
	switch rc := sqlite3.Xsqlite3_step(tls, stmt); rc {
	case sqlite3.SQLITE_DONE:
		return nil, st, false, nil
	case sqlite3.SQLITE_ROW:
	default:
		return nil, st, false, r.errorf("step", rc)
	}
	// The columns of connectionColumns, in order; the table is STRICT, so
	// each holds its declared type or NULL.
	c = &spotoken.Connection{AppID: key.AppID, ID: key.ID, Version: r.int(9), ConsecutiveFailures: int(r.int(13))}
	c.SpotifyUserID, c.DisplayName = r.text(2), r.text(3)
	if f := strings.Fields(r.text(4)); len(f) > 0 {
		c.Scopes = f
	}
	c.State = r.state(5)
	st.access, st.refresh = r.blob(6), r.blob(7)
	c.Lease.Owner, c.LastErrorCode = r.text(10), r.text(15)
	c.Token.Expiry, c.Lease.ExpiresAt, c.LastRefreshAt, c.NextAttemptAt = r.time(8), r.time(11), r.time(12), r.time(14)
	c.ConsentedAt, c.GrantExpiresAt, c.ExpiryWarnedAt = r.time(16), r.time(17), r.time(18)
	c.CreatedAt, c.UpdatedAt, c.RefreshUnknownAt = r.time(19), r.time(20), r.time(21)
	return c, st, true, nil
}

func (r *rawReader) int(i int) int64 {
	return sqlite3.Xsqlite3_column_int64(r.tls, r.stmt, int32(i))
}

// text returns column i as a string of its own ("" for NULL).
func (r *rawReader) text(i int) string {
	p := sqlite3.Xsqlite3_column_text(r.tls, r.stmt, int32(i))
	n := int(sqlite3.Xsqlite3_column_bytes(r.tls, r.stmt, int32(i)))
	if p == 0 || n == 0 {
		return ""
	}
	return string(libc.GoBytes(p, n))
}

// blob returns a copy of column i (nil for NULL or empty).
func (r *rawReader) blob(i int) []byte {
	p := sqlite3.Xsqlite3_column_blob(r.tls, r.stmt, int32(i))
	n := int(sqlite3.Xsqlite3_column_bytes(r.tls, r.stmt, int32(i)))
	if p == 0 || n == 0 {
		return nil
	}
	return append([]byte(nil), libc.GoBytes(p, n)...)
}

// time returns column i, unix microseconds, as a time in UTC; NULL is the
// zero time.
func (r *rawReader) time(i int) time.Time {
	if sqlite3.Xsqlite3_column_type(r.tls, r.stmt, int32(i)) == sqlite3.SQLITE_NULL {
		return time.Time{}
	}
	return time.UnixMicro(r.int(i)).UTC()
}

// state returns column i as a spotoken.State, without a copy for the
// three states there are.
func (r *rawReader) state(i int) spotoken.State {
	p := sqlite3.Xsqlite3_column_text(r.tls, r.stmt, int32(i))
	n := int(sqlite3.Xsqlite3_column_bytes(r.tls, r.stmt, int32(i)))
	if p == 0 || n == 0 {
		return ""
	}
	b := libc.GoBytes(p, n)
	for _, known := range []spotoken.State{spotoken.StateActive, spotoken.StateNeedsReauth, spotoken.StateRevoked} {
		if string(b) == string(known) {
			return known
		}
	}
	return spotoken.State(b)
}

// ptrSize is the size of a C pointer.
const ptrSize = libc.Tsize_t(unsafe.Sizeof(uintptr(0)))

// loadPtr reads the C pointer stored at p.
func loadPtr(p uintptr) uintptr {
	b := libc.GoBytes(p, int(ptrSize))
	if ptrSize == 8 {
		return uintptr(binary.NativeEndian.Uint64(b))
	}
	return uintptr(binary.NativeEndian.Uint32(b))
}
