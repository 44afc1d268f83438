// Package client runs MySQL clients inside a host's network namespace: the
// go-sql-driver driver (dialing from inside the namespace) and the flavor's
// own command-line client. Each run is one session: connect, run the
// statements in order on that one connection, close.
package client

import (
	"context"
	"net/netip"
	"os/exec"
	"sort"

	"errors"
	"fmt"
	"github.com/go-sql-driver/mysql"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/vishvananda/netns"
)

// Kinds of client.
const (
	KindGo  = "go"
	KindCLI = "cli"
)

// Sentinel errors.
var (
	ErrUnknownKind = errors.New("unknown client kind")
	ErrClosed      = errors.New("session closed")
	ErrNoSession   = errors.New("no open session")
)

// Spec is what one client session does.
type Spec struct {
	Kind           string
	Host           string // the host (namespace) the client runs on, for reports
	SQL            []string
	Database       string
	ConnectTimeout time.Duration // 0: the kernel's connect timeout
	ReadTimeout    time.Duration // go only; 0: none
	WriteTimeout   time.Duration // go only; 0: none
	Stream         *Stream       // go only: pace the reading of the last statement
	RcvBuf         int           // go only: SO_RCVBUF in bytes before connect; 0: default
	// Prepare runs each statement as a server-side prepared statement
	// (COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_CLOSE), as
	// go-sql-driver does for a query with arguments when interpolateParams
	// is off. go only.
	Prepare bool
	// Pool makes a named session a database/sql pool instead of one
	// connection. go only, with a session.
	Pool *Pool
}

// Pool is a database/sql connection pool of one connection, as an
// application holds it: a connection is reused across steps until the
// pool retires it.
type Pool struct {
	// MaxLifetime and MaxIdleTime are SetConnMaxLifetime and
	// SetConnMaxIdleTime; 0 means none.
	MaxLifetime, MaxIdleTime time.Duration
	// CheckLiveness is go-sql-driver's checkConnLiveness: before reusing a
	// pooled connection, a non-blocking read finds one the server closed.
	CheckLiveness bool
}

// Stream paces the reading of a result: Pause after every Rows rows.
type Stream struct {
	Pause time.Duration
	Rows  int
}

// Event is one timestamped thing the client did or saw.
type Event struct {
	Time time.Time `json:"time"`
	What string    `json:"what"`
}

// Statement is the outcome of one statement.
type Statement struct {
	SQL   string    `json:"sql"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Rows  int       `json:"rows"`
	First []string  `json:"first,omitempty"` // the first row, as text
	Error string    `json:"error,omitempty"`
}

// Result is the outcome of one client session.
type Result struct {
	Kind  string    `json:"kind"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Error is the session's first error as the client reported it: for the
	// cli client its "ERROR NNNN (SQLSTATE): ..." line, for the go client the
	// driver's error text.
	Error    string `json:"error,omitempty"`
	Code     int    `json:"code,omitempty"`     // MySQL error number
	SQLState string `json:"sqlstate,omitempty"` // five characters
	Errno    int    `json:"errno,omitempty"`    // system errno, e.g. 110 ETIMEDOUT
	// Local is the client's address once connected ("10.89.0.10:41234").
	Local string `json:"local,omitempty"`
	// ConnID is the server's thread id of the go client's connection.
	ConnID     int64       `json:"conn_id,omitempty"`
	Statements []Statement `json:"statements,omitempty"`
	Output     string      `json:"output,omitempty"` // cli standard output
	Events     []Event     `json:"events,omitempty"` // attempts and the driver's log lines
	mu         sync.Mutex
}

// Failed reports whether the session ended with an error.
func (r *Result) Failed() bool { return r.Error != "" }

// Elapsed is the session's duration.
func (r *Result) Elapsed() time.Duration { return r.End.Sub(r.Start) }

func (r *Result) event(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Events = append(r.Events, Event{Time: time.Now(), What: fmt.Sprintf(format, args...)})
}

// Target is the server a client dials: its address on the lab network, the
// lab account, and a command line of the flavor's own client already
// pointed at it (the server package makes one; the client never needs the
// server itself).
type Target struct {
	Flavor   string
	Addr     netip.AddrPort
	User     string
	Password string
	// Command returns the flavor's CLI with args after its connection
	// options; its Err says why when the CLI is not available.
	Command func(args ...string) *exec.Cmd
}

// DSNConfig is go-sql-driver's configuration for the target over TCP.
func (t Target) DSNConfig() *mysql.Config {
	c := mysql.NewConfig()
	c.Net = "tcp"
	c.Addr = t.Addr.String()
	c.User = t.User
	c.Passwd = t.Password
	return c
}

// Run runs one client session from namespace ns against t. It returns when
// the session ends or ctx is done; a cli process is killed on ctx.
func Run(ctx context.Context, ns netns.NsHandle, t Target, spec Spec, j *journal.Journal) *Result {
	if k, ok := KindOf(spec.Kind); ok {
		return k.run(ctx, ns, t, spec, j)
	}
	r := &Result{Kind: spec.Kind, Start: time.Now()}
	r.End = r.Start
	r.Error = fmt.Errorf("%w %q", ErrUnknownKind, spec.Kind).Error()
	return r
}

// Kind is one kind of client, registered by name from the file that
// implements it.
type Kind struct {
	Name string
	// Doc is one sentence for the scenario format's docs.
	Doc string
	// Options are the step options the kind honours beyond sql, database
	// and connect_timeout (read_timeout, session, stream, ...); the
	// scenario loader refuses the others for this kind, since accepting
	// them would promise a behaviour that never happens.
	Options []string
	run     func(ctx context.Context, ns netns.NsHandle, t Target, spec Spec, j *journal.Journal) *Result
}

var kinds = map[string]Kind{}

func register(k Kind) {
	if _, dup := kinds[k.Name]; dup {
		panic("client: kind registered twice: " + k.Name)
	}
	kinds[k.Name] = k
}

// KindOf returns a registered client kind.
func KindOf(name string) (Kind, bool) {
	k, ok := kinds[name]
	return k, ok
}

// Kinds returns the registered client kinds, sorted by name.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Supports reports whether the kind honours an option.
func (k Kind) Supports(option string) bool {
	for _, o := range k.Options {
		if o == option {
			return true
		}
	}
	return false
}

// errorLine matches the command-line clients' error lines, e.g.
//
//	ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11:3306' (110)
//	ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial communication packet', system error: 110
//	ERROR 1205 (HY000) at line 1: Lock wait timeout exceeded; try restarting transaction
var errorLine = regexp.MustCompile(`(?m)^ERROR (\d+) \(([0-9A-Z]{5})\)(?: at line \d+)?: (.*)$`)

// errnoTail finds the system errno at the end of the message: "(110)" from
// MySQL's client, "(110 \"Connection timed out\")" from MariaDB's, or
// "system error: 110" from both.
var errnoTail = regexp.MustCompile(`(?:\((\d+)(?: "[^"]*")?\)|system error: (\d+))\s*$`)

// ParseCLIError extracts the code, SQLSTATE, errno and line from a client's
// standard error. ok is false when there is no error line.
func ParseCLIError(stderr string) (code int, sqlstate string, errno int, line string, ok bool) {
	m := errorLine.FindStringSubmatch(stderr)
	if m == nil {
		return 0, "", 0, "", false
	}
	code, _ = strconv.Atoi(m[1])
	if e := errnoTail.FindStringSubmatch(m[3]); e != nil {
		s := e[1]
		if s == "" {
			s = e[2]
		}
		errno, _ = strconv.Atoi(s)
	}
	return code, m[2], errno, m[0], true
}

// errnoOf finds the system errno inside a wrapped Go error.
func errnoOf(err error) int {
	var en syscall.Errno
	if errors.As(err, &en) {
		return int(en)
	}
	return 0
}
