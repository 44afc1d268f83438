package client

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/vishvananda/netns"
)

func init() {
	register(Kind{Name: KindGo, Doc: "go-sql-driver/mysql, dialing from inside the host's namespace; one connection per step, or a named session that stays open across steps.",
		Options: []string{"read_timeout", "write_timeout", "session", "close", "stream", "rcvbuf", "prepare", "pool"},
		run: func(ctx context.Context, ns netns.NsHandle, t Target, spec Spec, _ *journal.Journal) *Result {
			return runGo(ctx, ns, t, spec)
		}})
}

// driverLog collects go-sql-driver's log lines into the result of the step
// running on the session: the driver reports the real cause of "invalid
// connection" (an i/o timeout, a reset) only there.
type driverLog struct{ s *Session }

func (l driverLog) Print(v ...any) {
	l.s.current().event("driver: %s", strings.TrimSpace(fmt.Sprint(v...)))
}

// Session is one go-sql-driver connection that stays open across timeline
// steps. The driver's connector is used directly, not database/sql, so that
// no hidden retry on driver.ErrBadConn opens a connection the scenario did
// not ask for.
type Session struct {
	Name string
	// ID is the server's thread id of the connection (CONNECTION_ID()).
	ID    int64
	Local string
	mu    sync.Mutex
	conn  driver.Conn
	// db is the session's pool when it is one (Spec.Pool); conn is nil
	// then, and each statement takes the pool's connection, which the pool
	// may have replaced since the last step.
	db *sql.DB
	// log receives the driver's log lines and dial events: the result of
	// the step running on the session. A pool may dial from its own
	// goroutine, hence the atomic.
	log atomic.Pointer[Result]
}

func (s *Session) current() *Result { return s.log.Load() }

// Open connects a session from namespace ns. The Result describes the
// connection attempt; on error the session is nil.
func Open(ctx context.Context, ns netns.NsHandle, t Target, name string, spec Spec) (*Session, *Result) {
	r := &Result{Kind: KindGo, Start: time.Now()}
	s := &Session{Name: name}
	s.log.Store(r)
	cfg := t.DSNConfig()
	cfg.DBName = spec.Database
	cfg.Timeout = spec.ConnectTimeout
	cfg.ReadTimeout = spec.ReadTimeout
	cfg.WriteTimeout = spec.WriteTimeout
	cfg.Logger = driverLog{s}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		r := s.current()
		r.event("dial %s %s", network, addr)
		c, err := dialIn(ctx, ns, network, addr, spec.RcvBuf)
		if err != nil {
			r.event("dial error: %v", err)
			return nil, err
		}
		r.mu.Lock()
		r.Local = c.LocalAddr().String()
		r.mu.Unlock()
		r.event("connected from %s", c.LocalAddr())
		return c, nil
	}
	if spec.Pool != nil {
		cfg.CheckConnLiveness = spec.Pool.CheckLiveness
	}
	conn, err := mysql.NewConnector(cfg)
	switch {
	case err != nil:
	case spec.Pool != nil:
		err = s.openPool(ctx, conn, spec.Pool)
	default:
		s.conn, err = conn.Connect(ctx)
		if err == nil {
			r.event("handshake done")
			// The thread id lets another step name this connection in
			// KILL, and ties processlist rows to the step.
			var rows []driver.Value
			rows, err = firstRow(ctx, s.conn, "SELECT CONNECTION_ID()")
			if err == nil && len(rows) > 0 {
				s.ID, _ = strconv.ParseInt(fmt.Sprint(rows[0]), 10, 64)
				r.ConnID = s.ID
				r.event("connection id %d", s.ID)
			}
		}
	}
	r.End = time.Now()
	if err != nil {
		r.fail(err)
		if s.conn != nil {
			s.conn.Close()
		}
		if s.db != nil {
			s.db.Close()
		}
		return nil, r
	}
	s.Local = r.Local
	return s, r
}

// Run runs statements on the session. Steps sharing a session take turns.
func (s *Session) Run(ctx context.Context, spec Spec) *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Result{Kind: KindGo, Start: time.Now(), Local: s.Local, ConnID: s.ID}
	prev := s.log.Swap(r)
	defer s.log.Store(prev)
	if s.conn == nil && s.db == nil {
		r.End = r.Start
		r.fail(fmt.Errorf("session %s: %w", s.Name, ErrClosed))
		return r
	}
	var err error
	if s.db != nil {
		err = runStatements(ctx, r, poolQueryer{s.db}, spec)
	} else {
		err = runStatements(ctx, r, connQueryer{s.conn}, spec)
	}
	r.End = time.Now()
	if err != nil {
		r.fail(err)
	}
	// A pool may have dialed a new connection for this step.
	s.Local = r.Local
	return r
}

// Close closes the session; it is idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		err := s.db.Close()
		s.db = nil
		return err
	}
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) {
		return nil
	}
	return err
}

// runGo is one session for one step: connect, statements, close.
func runGo(ctx context.Context, ns netns.NsHandle, t Target, spec Spec) *Result {
	s, r := Open(ctx, ns, t, "", spec)
	if s == nil {
		return r
	}
	res := s.Run(ctx, spec)
	res.Start = r.Start
	res.Events = append(r.Events, res.Events...)
	if err := s.Close(); err != nil && res.Error == "" {
		res.event("close: %v", err)
	}
	return res
}

// dialIn dials from inside a namespace, setting SO_RCVBUF before connect
// when asked: the window the client advertises is fixed at the handshake.
func dialIn(ctx context.Context, ns netns.NsHandle, network, addr string, rcvbuf int) (net.Conn, error) {
	var c net.Conn
	err := netem.Do(ns, func() error {
		d := net.Dialer{}
		if rcvbuf > 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
				})
				if err != nil {
					return err
				}
				return serr
			}
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// sessionRef is a statement's reference to a session's thread id.
var sessionRef = regexp.MustCompile(`\{\{([A-Za-z0-9_-]+)\.id\}\}`)

// Expand replaces {{NAME.id}} with the thread id of session NAME.
func Expand(stmt string, ids func(name string) (int64, bool)) (string, error) {
	var missing []string
	out := sessionRef.ReplaceAllStringFunc(stmt, func(m string) string {
		name := sessionRef.FindStringSubmatch(m)[1]
		id, ok := ids(name)
		if !ok {
			missing = append(missing, name)
			return m
		}
		return strconv.FormatInt(id, 10)
	})
	if len(missing) > 0 {
		return stmt, fmt.Errorf("%w: %s", ErrNoSession, strings.Join(missing, ", "))
	}
	return out, nil
}

// SessionRefs lists the sessions a statement names.
func SessionRefs(stmt string) []string {
	var out []string
	for _, m := range sessionRef.FindAllStringSubmatch(stmt, -1) {
		out = append(out, m[1])
	}
	return out
}

func runStatements(ctx context.Context, r *Result, q queryer, spec Spec) error {
	for i, s := range spec.SQL {
		st := Statement{SQL: s, Start: time.Now()}
		r.event("query %q", s)
		var stream *Stream
		if i == len(spec.SQL)-1 {
			stream = spec.Stream
		}
		n, first, err := q.query(ctx, r, s, spec.Prepare, stream)
		st.End, st.Rows, st.First = time.Now(), n, first
		if err != nil {
			st.Error = err.Error()
		}
		r.mu.Lock()
		r.Statements = append(r.Statements, st)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// firstRow runs a query and returns its first row.
func firstRow(ctx context.Context, dc driver.Conn, s string) ([]driver.Value, error) {
	_, first, err := connQueryer{dc}.query(ctx, nil, s, false, nil)
	vals := make([]driver.Value, len(first))
	for i, v := range first {
		vals[i] = v
	}
	return vals, err
}

// queryer runs one statement and reads every row of its result, pausing as
// stream says. It returns the row count and the first row as text.
type queryer interface {
	query(ctx context.Context, r *Result, s string, prepare bool, stream *Stream) (int, []string, error)
}

// connQueryer runs statements on one driver connection.
type connQueryer struct{ dc driver.Conn }

func (c connQueryer) query(ctx context.Context, r *Result, s string, prepare bool, stream *Stream) (int, []string, error) {
	var rows driver.Rows
	if prepare {
		// The statement is prepared on the server and executed with the
		// binary protocol: the request on the wire is COM_STMT_EXECUTE,
		// as for a query with arguments when interpolateParams is off.
		p, ok := c.dc.(driver.ConnPrepareContext)
		if !ok {
			return 0, nil, errors.New("driver connection cannot prepare statements")
		}
		st, err := p.PrepareContext(ctx, s)
		if err != nil {
			return 0, nil, err
		}
		if r != nil {
			r.event("prepared %q", s)
		}
		defer st.Close()
		sq, ok := st.(driver.StmtQueryContext)
		if !ok {
			return 0, nil, errors.New("driver statement cannot run queries")
		}
		if rows, err = sq.QueryContext(ctx, nil); err != nil {
			return 0, nil, err
		}
	} else {
		q, ok := c.dc.(driver.QueryerContext)
		if !ok {
			return 0, nil, errors.New("driver connection cannot run queries")
		}
		var err error
		if rows, err = q.QueryContext(ctx, s, nil); err != nil {
			return 0, nil, err
		}
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	n := 0
	var first []string
	for {
		err := rows.Next(dest)
		if errors.Is(err, io.EOF) {
			return n, first, nil
		}
		if err != nil {
			return n, first, err
		}
		if n == 0 {
			for _, v := range dest {
				first = append(first, text(v))
			}
		}
		n++
		if err := streamPause(ctx, r, stream, n); err != nil {
			return n, first, err
		}
	}
}

// poolQueryer runs statements through a database/sql pool: each statement
// takes the pool's connection, and database/sql retries on a fresh one
// when the driver says the pooled one is bad (driver.ErrBadConn), as an
// application's pool does.
type poolQueryer struct{ db *sql.DB }

func (p poolQueryer) query(ctx context.Context, r *Result, s string, prepare bool, stream *Stream) (int, []string, error) {
	var rows *sql.Rows
	var err error
	if prepare {
		var st *sql.Stmt
		if st, err = p.db.PrepareContext(ctx, s); err != nil {
			return 0, nil, err
		}
		defer st.Close()
		rows, err = st.QueryContext(ctx)
	} else {
		rows, err = p.db.QueryContext(ctx, s)
	}
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, nil, err
	}
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	n := 0
	var first []string
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, first, err
		}
		if n == 0 {
			for _, v := range raw {
				if v == nil {
					first = append(first, "NULL")
				} else {
					first = append(first, string(v))
				}
			}
		}
		n++
		if err := streamPause(ctx, r, stream, n); err != nil {
			return n, first, err
		}
	}
	return n, first, rows.Err()
}

// openPool opens the session's pool of one connection and its first
// connection, so that the connection exists from this step on, as an
// application's pooled connection does.
func (s *Session) openPool(ctx context.Context, c driver.Connector, p *Pool) error {
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(p.MaxLifetime)
	db.SetConnMaxIdleTime(p.MaxIdleTime)
	var id int64
	if err := db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		db.Close()
		return err
	}
	s.db, s.ID = db, id
	s.current().ConnID = id
	s.current().event("pool open (max lifetime %s, max idle time %s, liveness check %t), connection id %d", p.MaxLifetime, p.MaxIdleTime, p.CheckLiveness, id)
	return nil
}

// streamPause pauses a streaming reader after every stream.Rows rows.
func streamPause(ctx context.Context, r *Result, stream *Stream, n int) error {
	if stream == nil || stream.Pause <= 0 {
		return nil
	}
	every := max(stream.Rows, 1)
	if n%every != 0 {
		return nil
	}
	if r != nil && n == every {
		r.event("streaming: pausing %s every %d rows", stream.Pause, every)
	}
	return pause(ctx, stream.Pause)
}

// text renders a driver value as the command-line client would.
func text(v driver.Value) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return string(x)
	case time.Time:
		return x.Format("2006-01-02 15:04:05")
	}
	return fmt.Sprint(v)
}

func (r *Result) fail(err error) {
	r.Error = err.Error()
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		r.Code = int(me.Number)
		r.SQLState = string(me.SQLState[:])
	}
	r.Errno = errnoOf(err)
	r.event("error: %v", err)
}

// pause is a streaming reader's sleep, cut short by ctx. It is a variable
// so that tests count pauses instead of timing them.
var pause = func(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
