package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/vishvananda/netns"
)

func init() {
	register(Kind{Name: KindCLI, Doc: "The flavor's own command-line client (mysql or mariadb) from its root filesystem, run once with every statement in one -e, as the articles did from a shell.",
		Options: []string{"stream"}, run: runCLI})
}

// runCLI runs the flavor's own client once, with all statements in one -e,
// as the articles did from a shell.
func runCLI(ctx context.Context, ns netns.NsHandle, t Target, spec Spec, j *journal.Journal) *Result {
	r := &Result{Kind: KindCLI}
	args := []string{"--batch"}
	if spec.ConnectTimeout > 0 {
		// The client takes whole seconds; round up so a short timeout is
		// never turned into "none".
		secs := int((spec.ConnectTimeout + time.Second - 1) / time.Second)
		args = append(args, "--connect-timeout="+strconv.Itoa(secs))
	}
	if spec.Database != "" {
		args = append(args, "--database="+spec.Database)
	}
	sql := spec.SQL
	if spec.Stream != nil {
		// --quick fetches the result row by row (mysql_use_result) instead
		// of buffering it whole, so a client whose standard output is read
		// slowly stops reading its socket: the unbuffered cursor of a slow
		// application. Without column names every output line is a row.
		args = append(args, "--quick", "--skip-column-names")
		// The first line is the connection's thread id, as the go client
		// learns it: it ties processlist rows to the step. It shares the
		// first statement's line, so that an error's "at line N" still
		// counts the scenario's statements.
		if len(sql) == 0 {
			sql = []string{"SELECT CONNECTION_ID()"}
		} else {
			sql = append([]string{"SELECT CONNECTION_ID(); " + sql[0]}, sql[1:]...)
		}
	}
	if len(sql) > 0 {
		args = append(args, "-e", strings.Join(sql, ";\n"))
	}
	cmd := t.Command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var (
		paced chan error
		pr    *os.File
	)
	if spec.Stream != nil {
		// The client writes into a pipe that pace drains; a full pipe
		// (64 KiB) blocks the client's write to its standard output.
		var pw *os.File
		var err error
		if pr, pw, err = os.Pipe(); err != nil {
			r.Start, r.End = time.Now(), time.Now()
			r.fail(fmt.Errorf("stdout pipe: %w", err))
			return r
		}
		cmd.Stdout = pw
		defer pw.Close()
	}
	r.Start = time.Now()
	r.event("exec %s", strings.Join(cmd.Args, " "))
	if err := netem.Start(ns, cmd); err != nil {
		if pr != nil {
			pr.Close()
		}
		r.End = time.Now()
		r.fail(fmt.Errorf("start client: %w", err))
		return r
	}
	if j != nil {
		j.AddProcess(cmd.Process.Pid, "client")
	}
	if spec.Stream != nil {
		// Only the child holds the write end now, so the reader sees EOF
		// when the client exits or is killed.
		cmd.Stdout.(*os.File).Close()
		paced = make(chan error, 1)
		go func() { paced <- pace(ctx, r, pr, *spec.Stream, &stdout) }()
	}
	done := make(chan error, 1)
	go func() {
		if paced != nil {
			// Wait must not run while the pipe is still being read. Once
			// pace has stopped, closing the read end turns a client still
			// writing its rows into one that fails with EPIPE, not one
			// blocked for ever on a full pipe.
			<-paced
			pr.Close()
		}
		done <- cmd.Wait()
	}()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		werr = <-done
		r.event("killed: %v", ctx.Err())
	}
	r.End = time.Now()
	r.Output = stdout.String()
	if code, state, errno, line, ok := ParseCLIError(stderr.String()); ok {
		r.Error, r.Code, r.SQLState, r.Errno = line, code, state, errno
		r.event("error: %s", line)
	} else if werr != nil {
		r.Error = strings.TrimSpace(stderr.String() + " " + werr.Error())
		r.event("exit: %v", werr)
	}
	return r
}

// keepOutput bounds the standard output a streaming cli client keeps for
// the report: a slow reader's result is megabytes of rows.
const keepOutput = 4096

// pace reads the client's standard output line by line, one line per row,
// and sleeps stream.Pause after every stream.Rows rows, as an application
// with an unbuffered cursor that handles rows slowly. The first line is the
// connection id (SELECT CONNECTION_ID()), not a row. It keeps the first
// keepOutput bytes in keep and returns at EOF, on a read error, or when ctx
// is done (the caller then kills the client).
func pace(ctx context.Context, r *Result, out io.Reader, st Stream, keep *bytes.Buffer) error {
	every := max(st.Rows, 1)
	br := bufio.NewReader(out)
	n := 0
	first := true
	defer func() { r.event("streaming: read %d rows", n) }()
	for {
		line, err := br.ReadSlice('\n')
		if keep.Len() < keepOutput {
			keep.Write(line[:min(len(line), keepOutput-keep.Len())])
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A row longer than the buffer: the rest of it follows.
			first = false
			continue
		}
		complete := len(line) > 0 && line[len(line)-1] == '\n'
		if complete && first {
			first = false
			if id, perr := strconv.ParseInt(strings.TrimSpace(string(line)), 10, 64); perr == nil {
				r.mu.Lock()
				r.ConnID = id
				r.mu.Unlock()
				r.event("connection id %d", id)
			}
		} else if complete {
			n++
			if n%every == 0 {
				if n == every {
					r.event("streaming: pausing %s every %d rows", st.Pause, every)
				}
				if err := pause(ctx, st.Pause); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
