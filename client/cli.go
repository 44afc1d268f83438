package client

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/server"
	"github.com/vishvananda/netns"
)

// runCLI runs the flavor's own client once, with all statements in one -e,
// as the articles did from a shell.
func runCLI(ctx context.Context, ns netns.NsHandle, srv *server.Server, spec Spec, j *journal.Journal) *Result {
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
	if len(spec.SQL) > 0 {
		args = append(args, "-e", strings.Join(spec.SQL, ";\n"))
	}
	cmd := srv.ClientCommand(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r.Start = time.Now()
	r.event("exec %s", strings.Join(cmd.Args, " "))
	if err := netem.Start(ns, cmd); err != nil {
		r.End = time.Now()
		r.fail(fmt.Errorf("start client: %w", err))
		return r
	}
	if j != nil {
		j.AddProcess(cmd.Process.Pid, "client")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
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
