package actions

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/scenarios"
)

// Client is one client session: connect, run the statements in order on
// that one connection, and close; or a named session that stays open
// across steps.
type Client struct {
	// Kind is a registered client kind: "cli" (the flavor's own mysql or
	// mariadb binary) or "go" (go-sql-driver/mysql).
	Kind     string   `yaml:"kind" json:"kind"`
	SQL      []string `yaml:"sql,omitempty" json:"sql,omitempty"`
	Database string   `yaml:"database,omitempty" json:"database,omitempty"`
	// ConnectTimeout is the cli client's --connect-timeout and the go
	// client's timeout (dial); 0 leaves it to the kernel.
	ConnectTimeout scenarios.Duration `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitempty"`
	// ReadTimeout and WriteTimeout are go-sql-driver's readTimeout and
	// writeTimeout; 0 means none.
	ReadTimeout  scenarios.Duration `yaml:"read_timeout,omitempty" json:"read_timeout,omitempty"`
	WriteTimeout scenarios.Duration `yaml:"write_timeout,omitempty" json:"write_timeout,omitempty"`
	// Session names a connection that stays open across steps: the first
	// step that names it connects, later steps reuse it, and it closes at
	// the end of the timeline or with Close. Statements may name a
	// session's server thread id as {{NAME.id}}, e.g. "KILL {{reader.id}}".
	Session string `yaml:"session,omitempty" json:"session,omitempty"`
	// Close closes the session after this step's statements.
	Close bool `yaml:"close,omitempty" json:"close,omitempty"`
	// Stream reads the result row by row with pauses, as an unbuffered
	// cursor in a slow application does.
	Stream *Stream `yaml:"stream,omitempty" json:"stream,omitempty"`
	// RcvBuf sets SO_RCVBUF on the client's socket, in bytes, before it
	// connects; 0 leaves the kernel's default.
	RcvBuf int `yaml:"rcvbuf,omitempty" json:"rcvbuf,omitempty"`
	// Prepare runs each statement as a server-side prepared statement.
	Prepare bool `yaml:"prepare,omitempty" json:"prepare,omitempty"`
	// Pool makes the named session a database/sql pool.
	Pool *Pool `yaml:"pool,omitempty" json:"pool,omitempty"`
}

// Pool is an application's connection pool of one connection.
type Pool struct {
	MaxLifetime scenarios.Duration `yaml:"max_lifetime,omitempty" json:"max_lifetime,omitempty"`
	MaxIdleTime scenarios.Duration `yaml:"max_idle_time,omitempty" json:"max_idle_time,omitempty"`
	// CheckLiveness defaults to true, as in go-sql-driver.
	CheckLiveness *bool `yaml:"check_liveness,omitempty" json:"check_liveness,omitempty"`
}

// Stream paces the reading of a result.
type Stream struct {
	// Pause is how long the client sleeps after every Rows rows.
	Pause scenarios.Duration `yaml:"pause" json:"pause"`
	// Rows is how many rows are read between pauses; default 1.
	Rows int `yaml:"rows,omitempty" json:"rows,omitempty"`
}

// DefaultClientHost is the host of a client step that names none.
const DefaultClientHost = "client"

func init() {
	var kinds []string
	for _, k := range client.Kinds() {
		kinds = append(kinds, k.Name)
	}
	register(scenarios.ActionKind{
		Name:     "client",
		Settable: []string{"connect_timeout", "read_timeout", "write_timeout", "rcvbuf"},
		Doc:      "Runs a MySQL client from the host: one session, or a named session that stays open across steps.",
		New:      func() any { return new(Client) },
		Host:     DefaultClientHost,
		Connects: true,
		TypeDocs: map[string]string{
			"Client": "One client session: connect, run the statements in order on that one connection, and close.",
			"Stream": "Paces the reading of a result.",
			"Pool":   "An application's database/sql pool of one connection, kept across the session's steps.",
		},
		FieldDocs: map[string]string{
			"Client.kind":            kindsDoc(),
			"Client.sql":             "Statements run in order on one connection.",
			"Client.database":        "The database to connect to.",
			"Client.connect_timeout": "The cli client's --connect-timeout and the go client's dial timeout; 0 leaves it to the kernel.",
			"Client.read_timeout":    "go-sql-driver's readTimeout; 0 means none. Only for kind go.",
			"Client.write_timeout":   "go-sql-driver's writeTimeout; 0 means none. Only for kind go.",
			"Client.session":         "Names a connection that stays open across steps (go client only): the first step that names it connects, later steps reuse it. Statements may write its server thread id as {{NAME.id}}, e.g. \"KILL {{reader.id}}\".",
			"Client.close":           "Closes the session after this step's statements.",
			"Client.stream":          "Reads the result row by row with pauses, as a slow application with an unbuffered cursor does: the go client pauses in the last statement's rows; the cli client runs with --quick and its standard output, one line per row, is read with the pauses.",
			"Client.rcvbuf":          "SO_RCVBUF on the client's socket, in bytes, set before it connects (go client only); 0 leaves the kernel's default.",
			"Client.prepare":         "Runs each statement as a server-side prepared statement (COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_CLOSE), as go-sql-driver does for a query with arguments when interpolateParams is off (go client only).",
			"Client.pool":            "Makes the named session a database/sql pool of one connection, as an application holds one: set on the session's first step; each statement takes the pool's connection, and database/sql silently replaces one the driver finds bad (go client only).",
			"Pool.max_lifetime":      "SetConnMaxLifetime: the pool retires a connection this old before reusing it; 0 means never.",
			"Pool.max_idle_time":     "SetConnMaxIdleTime: the pool retires a connection idle this long; 0 means never.",
			"Pool.check_liveness":    "go-sql-driver's checkConnLiveness (default true): before reusing a pooled connection, a non-blocking read finds one the server has closed, and the pool dials a new one.",
			"Stream.pause":           "How long the client sleeps after every `rows` rows.",
			"Stream.rows":            "How many rows are read between pauses; default 1.",
		},
		FieldSchema: map[string]map[string]any{
			"Client.kind":   {"enum": kinds},
			"Client.rcvbuf": {"minimum": 0},
			"Stream.rows":   {"minimum": 0},
		},
		Validate:    validateClient,
		ValidateAll: sessions,
	})
}

func kindsDoc() string {
	var parts []string
	for _, k := range client.Kinds() {
		parts = append(parts, fmt.Sprintf("%q: %s", k.Name, k.Doc))
	}
	return "The client: " + strings.Join(parts, " ")
}

// options are the client fields a kind may not support, by YAML name, and
// whether a step set them.
func (c *Client) options() map[string]bool {
	return map[string]bool{
		"read_timeout":  c.ReadTimeout != 0,
		"write_timeout": c.WriteTimeout != 0,
		"session":       c.Session != "",
		"close":         c.Close,
		"stream":        c.Stream != nil,
		"rcvbuf":        c.RcvBuf != 0,
		"prepare":       c.Prepare,
		"pool":          c.Pool != nil,
	}
}

func validateClient(v *scenarios.Validator, path string, st *scenarios.Step) {
	c := st.Action.(*Client)
	var names []string
	for _, k := range client.Kinds() {
		names = append(names, k.Name)
	}
	kind, ok := client.KindOf(c.Kind)
	switch {
	case c.Kind == "":
		v.Add(path+".kind", "required (%s)", strings.Join(names, " or "))
	case !ok:
		v.Add(path+".kind", "unknown client kind %q (want %s)", c.Kind, strings.Join(names, " or "))
	default:
		// A kind without the option would accept it and do nothing:
		// a promised timeout that never happens.
		for _, opt := range []string{"close", "pool", "prepare", "rcvbuf", "read_timeout", "session", "stream", "write_timeout"} {
			if c.options()[opt] && !kind.Supports(opt) {
				var with []string
				for _, k := range client.Kinds() {
					if k.Supports(opt) {
						with = append(with, k.Name)
					}
				}
				v.Add(path+"."+opt, "only for kind %s", strings.Join(with, " or "))
			}
		}
	}
	if c.Close && c.Session == "" {
		v.Add(path+".close", "only with session")
	}
	if c.Pool != nil && c.Session == "" {
		v.Add(path+".pool", "only with session: a pool lives across steps")
	}
	if c.Pool != nil && (c.Pool.MaxLifetime < 0 || c.Pool.MaxIdleTime < 0) {
		v.Add(path+".pool", "want durations of 0 or more")
	}
	if c.Session != "" && !scenarios.HostName.MatchString(c.Session) {
		v.Add(path+".session", "bad session name %q: lowercase letters, digits, - and _", c.Session)
	}
	if c.Stream != nil && c.Stream.Pause <= 0 {
		v.Add(path+".stream.pause", "want a positive duration")
	}
	if c.Stream != nil && c.Stream.Rows < 0 {
		v.Add(path+".stream.rows", "want 1 or more")
	}
	if c.RcvBuf < 0 {
		v.Add(path+".rcvbuf", "want 0 or more bytes")
	}
}

// sessions checks that a named session stays on one host and that every
// {{NAME.id}} names a session some step opens.
func sessions(v *scenarios.Validator) {
	hosts := map[string]string{}
	steps := v.Scenario().Timeline
	for i, st := range steps {
		c, ok := ClientOf(st)
		if !ok || c.Session == "" {
			continue
		}
		if h, ok := hosts[c.Session]; ok && h != st.Host {
			v.Add(fmt.Sprintf("timeline[%d].host", i), "session %q is on host %s, not %s", c.Session, h, st.Host)
		} else if !ok {
			hosts[c.Session] = st.Host
		} else if c.Pool != nil {
			// The pool is made when the session opens; on a later step it
			// would do nothing.
			v.Add(fmt.Sprintf("timeline[%d].client.pool", i), "only on the first step of session %q", c.Session)
		}
	}
	for i, st := range steps {
		c, ok := ClientOf(st)
		if !ok {
			continue
		}
		for j, stmt := range c.SQL {
			for _, ref := range client.SessionRefs(stmt) {
				if _, ok := hosts[ref]; !ok {
					v.Add(fmt.Sprintf("timeline[%d].client.sql[%d]", i, j), "{{%s.id}} names no session (no step has session: %s)", ref, ref)
				}
			}
		}
	}
}

// ClientOf returns a client step's action; ok is false for other steps.
func ClientOf(st *scenarios.Step) (*Client, bool) {
	if st == nil {
		return nil, false
	}
	c, ok := st.Action.(*Client)
	return c, ok
}

// Apply runs the client: alone, or on a named session that stays open
// across steps.
func (c *Client) Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	h := env.Host(st.Host)
	spec := client.Spec{Kind: c.Kind, Host: st.Host, Database: c.Database,
		ConnectTimeout: c.ConnectTimeout.D(), ReadTimeout: c.ReadTimeout.D(), WriteTimeout: c.WriteTimeout.D(), RcvBuf: c.RcvBuf,
		Prepare: c.Prepare}
	if p := c.Pool; p != nil {
		spec.Pool = &client.Pool{MaxLifetime: p.MaxLifetime.D(), MaxIdleTime: p.MaxIdleTime.D(), CheckLiveness: p.CheckLiveness == nil || *p.CheckLiveness}
	}
	if c.Stream != nil {
		spec.Stream = &client.Stream{Pause: c.Stream.Pause.D(), Rows: c.Stream.Rows}
	}
	started := time.Now()
	for _, stmt := range c.SQL {
		x, err := client.Expand(stmt, func(name string) (int64, bool) {
			if s := env.Session(name); s != nil {
				return s.ID, true
			}
			return 0, false
		})
		if err != nil {
			res := &client.Result{Kind: c.Kind, Start: started, End: time.Now()}
			res.Error = err.Error()
			return Result{Client: res}, nil
		}
		spec.SQL = append(spec.SQL, x)
	}
	if c.Session == "" {
		return Result{Client: client.Run(ctx, h.NS, env.Target(), spec, env.Journal())}, nil
	}
	sess := env.Session(c.Session)
	var opened *client.Result
	if sess == nil {
		sess, opened = client.Open(ctx, h.NS, env.Target(), c.Session, spec)
		if sess == nil {
			return Result{Client: opened}, nil
		}
		env.SetSession(c.Session, sess)
	}
	res := sess.Run(ctx, spec)
	if opened != nil {
		res.Start = opened.Start
		res.Events = append(opened.Events, res.Events...)
	}
	if c.Close {
		sess.Close()
		env.SetSession(c.Session, nil)
	}
	return Result{Client: res}, nil
}
