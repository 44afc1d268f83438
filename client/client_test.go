package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// The stderr texts are what the mysql (Oracle) and mariadb command-line
// clients print, copied from their runs and from the articles.
func TestParseCLIError(t *testing.T) {
	const warning = "mysql: [Warning] Using a password on the command line interface can be insecure.\n"
	tests := []struct {
		name     string
		stderr   string
		ok       bool
		code     int
		sqlstate string
		errno    int
		line     string
	}{
		{
			name:     "connect timeout, mysql",
			stderr:   "ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11:3306' (110)\n",
			ok:       true,
			code:     2003,
			sqlstate: "HY000",
			errno:    110,
			line:     "ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11:3306' (110)",
		},
		{
			name:     "connect in progress, mariadb",
			stderr:   "ERROR 2002 (HY000): Can't connect to server on '10.89.0.11' (115)\n",
			ok:       true,
			code:     2002,
			sqlstate: "HY000",
			errno:    115,
			line:     "ERROR 2002 (HY000): Can't connect to server on '10.89.0.11' (115)",
		},
		{
			// MariaDB's client adds the errno's text in quotes.
			name:     "connect timeout with the errno's text, mariadb",
			stderr:   "ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11' (110 \"Connection timed out\")\n",
			ok:       true,
			code:     2003,
			sqlstate: "HY000",
			errno:    110,
			line:     "ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11' (110 \"Connection timed out\")",
		},
		{
			name:     "lost during the handshake",
			stderr:   "ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial communication packet', system error: 110\n",
			ok:       true,
			code:     2013,
			sqlstate: "HY000",
			errno:    110,
			line:     "ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial communication packet', system error: 110",
		},
		{
			name:     "lost during the handshake, trailing space",
			stderr:   "ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial communication packet', system error: 104 \n",
			ok:       true,
			code:     2013,
			sqlstate: "HY000",
			errno:    104,
			line:     "ERROR 2013 (HY000): Lost connection to MySQL server at 'reading initial communication packet', system error: 104 ",
		},
		{
			name:     "lost during a query, with its line",
			stderr:   "ERROR 2013 (HY000) at line 2: Lost connection to MySQL server during query\n",
			ok:       true,
			code:     2013,
			sqlstate: "HY000",
			line:     "ERROR 2013 (HY000) at line 2: Lost connection to MySQL server during query",
		},
		{
			name:     "server error",
			stderr:   "ERROR 1205 (HY000) at line 1: Lock wait timeout exceeded; try restarting transaction\n",
			ok:       true,
			code:     1205,
			sqlstate: "HY000",
			line:     "ERROR 1205 (HY000) at line 1: Lock wait timeout exceeded; try restarting transaction",
		},
		{
			name:     "warning before the error",
			stderr:   warning + "ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11:3306' (110)\n",
			ok:       true,
			code:     2003,
			sqlstate: "HY000",
			errno:    110,
			line:     "ERROR 2003 (HY000): Can't connect to MySQL server on '10.89.0.11:3306' (110)",
		},
		{
			name:     "no final newline",
			stderr:   "ERROR 1045 (28000): Access denied for user 'lab'@'10.89.0.10' (using password: YES)",
			ok:       true,
			code:     1045,
			sqlstate: "28000",
			line:     "ERROR 1045 (28000): Access denied for user 'lab'@'10.89.0.10' (using password: YES)",
		},
		{name: "warning only", stderr: warning},
		{name: "nothing", stderr: ""},
		{
			// An error text quoted inside another line is not the client's
			// error line.
			name:   "error text not at the start of a line",
			stderr: "note: ERROR 2003 (HY000): Can't connect (110)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, sqlstate, errno, line, ok := ParseCLIError(tt.stderr)
			if ok != tt.ok || code != tt.code || sqlstate != tt.sqlstate || errno != tt.errno || line != tt.line {
				t.Errorf("ParseCLIError(%q) = %d, %q, %d, %q, %v; want %d, %q, %d, %q, %v",
					tt.stderr, code, sqlstate, errno, line, ok, tt.code, tt.sqlstate, tt.errno, tt.line, tt.ok)
			}
		})
	}
}

func TestErrnoOf(t *testing.T) {
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"bare errno", syscall.ETIMEDOUT, 110},
		{"syscall error", os.NewSyscallError("connect", syscall.ETIMEDOUT), 110},
		{"dial error", dialErr, 111},
		{"wrapped dial error", fmt.Errorf("connect to 10.89.0.11:3306: %w", dialErr), 111},
		{"read reset", fmt.Errorf("read: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), 104},
		{"joined", errors.Join(errors.New("handshake"), syscall.EHOSTUNREACH), 113},
		// A Go timeout is not a kernel errno.
		{"deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), 0},
		{"driver error", &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}, 0},
		{"text only", errors.New("invalid connection"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errnoOf(tt.err); got != tt.want {
				t.Errorf("errnoOf(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// fail fills in the code, SQLSTATE and errno from the driver's error.
func TestResultFail(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     int
		sqlstate string
		errno    int
	}{
		{
			name:     "server error",
			err:      &mysql.MySQLError{Number: 1205, SQLState: [5]byte{'H', 'Y', '0', '0', '0'}, Message: "Lock wait timeout exceeded; try restarting transaction"},
			code:     1205,
			sqlstate: "HY000",
		},
		{
			name:  "dial timeout from the kernel",
			err:   &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)},
			errno: 110,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{}
			r.fail(tt.err)
			if r.Error != tt.err.Error() || r.Code != tt.code || r.SQLState != tt.sqlstate || r.Errno != tt.errno || !r.Failed() {
				t.Errorf("fail(%v): Error %q, Code %d, SQLState %q, Errno %d; want %q, %d, %q, %d",
					tt.err, r.Error, r.Code, r.SQLState, r.Errno, tt.err.Error(), tt.code, tt.sqlstate, tt.errno)
			}
			if len(r.Events) != 1 {
				t.Errorf("events = %v, want the error recorded once", r.Events)
			}
		})
	}
}

func TestRunUnknownKind(t *testing.T) {
	r := Run(context.Background(), 0, Target{}, Spec{Kind: "odbc"}, nil)
	if !r.Failed() || r.Kind != "odbc" || r.Error != `unknown client kind "odbc"` {
		t.Errorf("Run(kind odbc) = %+v, want a failed result naming the kind", r)
	}
}
