package client

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// Thread is one row of information_schema.PROCESSLIST.
type Thread struct {
	ID      int64  `json:"id"`
	User    string `json:"user"`
	Host    string `json:"host"`
	DB      string `json:"db,omitempty"`
	Command string `json:"command"`
	Time    int64  `json:"time"`
	State   string `json:"state,omitempty"`
	Info    string `json:"info,omitempty"`
}

// Trx is one row of information_schema.INNODB_TRX.
type Trx struct {
	ID       string `json:"id"`
	State    string `json:"state"` // RUNNING, LOCK WAIT, ROLLING BACK, COMMITTING
	Started  string `json:"started"`
	ThreadID int64  `json:"thread_id"`
	Query    string `json:"query,omitempty"`
}

// ServerSample is the server's threads and transactions at one moment.
type ServerSample struct {
	Time    time.Time `json:"time"`
	Threads []Thread  `json:"threads"`
	Trx     []Trx     `json:"trx"`
	Error   string    `json:"error,omitempty"`
}

const (
	threadsQuery = "SELECT ID, USER, HOST, IFNULL(DB, ''), COMMAND, TIME, IFNULL(STATE, ''), IFNULL(INFO, '') FROM information_schema.PROCESSLIST"
	trxQuery     = "SELECT trx_id, trx_state, trx_started, trx_mysql_thread_id, IFNULL(trx_query, '') FROM information_schema.INNODB_TRX"
)

// ProcesslistSampler polls the server's threads and transactions over its
// own session, opened from the server's namespace so that its packets never
// cross the lab network. Its own thread is left out of the samples.
type ProcesslistSampler struct {
	s       *Session
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	samples []ServerSample
}

// StartProcesslist opens the admin session and samples every period (at
// least 20 ms) until Stop.
func StartProcesslist(ctx context.Context, ns netns.NsHandle, t Target, every time.Duration) (*ProcesslistSampler, error) {
	if every < 20*time.Millisecond {
		every = 20 * time.Millisecond
	}
	s, r := Open(ctx, ns, t, "processlist", Spec{Kind: KindGo, ReadTimeout: 10 * time.Second})
	if s == nil {
		return nil, errors.New("processlist session: " + r.Error)
	}
	p := &ProcesslistSampler{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			p.samples = append(p.samples, p.sample(ctx))
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p, nil
}

func (p *ProcesslistSampler) sample(ctx context.Context) ServerSample {
	sm := ServerSample{Time: time.Now(), Threads: []Thread{}, Trx: []Trx{}}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.conn == nil {
		sm.Error = ErrClosed.Error()
		return sm
	}
	err := eachRow(ctx, p.s.conn, threadsQuery, func(v []string) {
		th := Thread{User: v[1], Host: v[2], DB: v[3], Command: v[4], State: v[6], Info: v[7]}
		th.ID, _ = strconv.ParseInt(v[0], 10, 64)
		th.Time, _ = strconv.ParseInt(v[5], 10, 64)
		if th.ID != p.s.ID {
			sm.Threads = append(sm.Threads, th)
		}
	})
	if err == nil {
		err = eachRow(ctx, p.s.conn, trxQuery, func(v []string) {
			tx := Trx{ID: v[0], State: v[1], Started: v[2], Query: v[4]}
			tx.ThreadID, _ = strconv.ParseInt(v[3], 10, 64)
			sm.Trx = append(sm.Trx, tx)
		})
	}
	if err != nil {
		sm.Error = err.Error()
	}
	return sm
}

// eachRow runs a query and hands every row, as text, to fn.
func eachRow(ctx context.Context, dc driver.Conn, q string, fn func([]string)) error {
	qc, ok := dc.(driver.QueryerContext)
	if !ok {
		return errors.New("driver connection cannot run queries")
	}
	rows, err := qc.QueryContext(ctx, q, nil)
	if err != nil {
		return err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(dest); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		vals := make([]string, len(dest))
		for i, v := range dest {
			vals[i] = text(v)
		}
		fn(vals)
	}
}

// Stop ends sampling, closes the admin session and returns the samples.
func (p *ProcesslistSampler) Stop() []ServerSample {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	p.s.Close()
	return p.samples
}
