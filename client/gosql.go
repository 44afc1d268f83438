package client

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/labrun/labrun/server"
	"github.com/vishvananda/netns"
)

// driverLog collects go-sql-driver's log lines: the driver reports the real
// cause of "invalid connection" (an i/o timeout, a reset) only there.
type driverLog struct{ r *Result }

func (l driverLog) Print(v ...any) { l.r.event("driver: %s", strings.TrimSpace(fmt.Sprint(v...))) }

// runGo uses the driver's connector directly, not database/sql, so that no
// hidden retry on driver.ErrBadConn adds a connection the scenario did not
// ask for.
func runGo(ctx context.Context, ns netns.NsHandle, srv *server.Server, spec Spec) *Result {
	r := &Result{Kind: KindGo}
	cfg := srv.DSNConfig()
	cfg.DBName = spec.Database
	cfg.Timeout = spec.ConnectTimeout
	cfg.ReadTimeout = spec.ReadTimeout
	cfg.WriteTimeout = spec.WriteTimeout
	cfg.Logger = driverLog{r}
	dial := server.DialContextIn(ns)
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.event("dial %s %s", network, addr)
		c, err := dial(ctx, addr)
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
	r.Start = time.Now()
	defer func() { r.End = time.Now() }()
	conn, err := mysql.NewConnector(cfg)
	if err == nil {
		var dc driver.Conn
		dc, err = conn.Connect(ctx)
		if err == nil {
			r.event("handshake done")
			err = runStatements(ctx, r, dc, spec.SQL)
			if cerr := dc.Close(); cerr != nil && err == nil && !errors.Is(cerr, mysql.ErrInvalidConn) && !errors.Is(cerr, driver.ErrBadConn) {
				r.event("close: %v", cerr)
			}
		}
	}
	if err != nil {
		r.fail(err)
	}
	return r
}

func runStatements(ctx context.Context, r *Result, dc driver.Conn, stmts []string) error {
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return errors.New("driver connection cannot run queries")
	}
	for _, s := range stmts {
		st := Statement{SQL: s, Start: time.Now()}
		r.event("query %q", s)
		n, err := query(ctx, q, s)
		st.End, st.Rows = time.Now(), n
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

// query runs one statement and reads every row of its result.
func query(ctx context.Context, q driver.QueryerContext, s string) (int, error) {
	rows, err := q.QueryContext(ctx, s, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	n := 0
	for {
		err := rows.Next(dest)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
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
