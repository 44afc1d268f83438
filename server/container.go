package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	dockercontainer "github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"golang.org/x/sys/unix"

	"github.com/labrun/labrun/journal"
)

// The container engine (EngineContainer) runs the same server command line
// as the process engine, in a Docker container made with testcontainers-go:
//
//   - no network of Docker's (network mode "none"): once the container runs,
//     Config.Attach plugs the host's lab link into the container's network
//     namespace, so iptables rules, sysctls, captures and socket samples see
//     a host like any other;
//   - mysqld waits for that: the container's first process is a shell that
//     polls for a file labrun writes in the run directory once the link is
//     up, then execs the server, which becomes the container's PID 1;
//   - the per-run directory (data directory copied from the template, init
//     file, logs) is made exactly as for the process engine and bind-mounted
//     at the same path as in the chroot;
//   - the container is journaled (by name) before it is created, and labelled
//     with the run ID, so that `labrun cleanup` can remove it after a SIGKILL.

const (
	// readyFile, in the run directory's run/, releases the gate.
	readyFile = "run/net-ready"
	// gateTicks × gatePoll bounds the gate's wait for the lab link: 60 s.
	gateTicks = 3000
	gatePoll  = "0.02"
	// containerReadyCap is longer than readyCap: an official image
	// initializes its empty data directory first (tens of seconds).
	containerReadyCap = 180 * time.Second
	// containerOpTimeout bounds each call to the engine during Stop.
	containerOpTimeout = 60 * time.Second
)

// gateScript waits for "$0" (the ready file) and then execs "$@" with its
// output appended to the run's stderr.log, as the process engine does.
var gateScript = `i=0
while [ ! -e "$0" ]; do
	i=$((i+1))
	if [ "$i" -gt ` + strconv.Itoa(gateTicks) + ` ]; then echo "labrun: the lab link never came up" >&2; exit 70; fi
	sleep ` + gatePoll + `
done
dir=${0%/run/net-ready}
exec "$@" >>"$dir/stderr.log" 2>&1`

// container is a started container: its testcontainers handle, name and
// journal entry.
type container struct {
	tc    testcontainers.Container
	name  string
	entry journal.Entry
	pidfd int
}

// ContainerName is the name of a run's server container: the same as its
// host's namespace, "lr-<run>-<host>".
func ContainerName(runID, host string) string { return "lr-" + runID + "-" + host }

func startContainer(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "server"
	}
	p, err := newProvider(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	ref := cfg.Image
	var root *Image
	if ref == "" {
		if root, err = Find(cfg.Flavor); err != nil {
			return nil, err
		}
		ref = LocalImage(cfg.Flavor, root.Version)
	} else if r, err := Find(cfg.Flavor); err == nil {
		// Another image: the root filesystem, when there is one, still
		// provides the CLI client and the place of the run directory.
		root = r
	}
	dimg, err := ensureImage(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	if dimg.Local && dimg.Flavor != cfg.Flavor {
		return nil, fmt.Errorf("%w: image %s holds %s, not %s", ErrInvalidConfig, ref, dimg.Flavor, cfg.Flavor)
	}
	password, err := newPassword()
	if err != nil {
		return nil, err
	}
	chrootRun := runsDir + "/" + cfg.RunID
	runRoot := filepath.Join(CacheDir(), "container-runs")
	if root != nil {
		runRoot = filepath.Join(root.Root, runsDir)
	}
	s := &Server{
		Flavor:    cfg.Flavor,
		Addr:      netip.AddrPortFrom(cfg.Address, uint16(cfg.Port)),
		User:      User,
		Password:  password,
		Image:     root,
		RunDir:    filepath.Join(runRoot, cfg.RunID),
		Engine:    EngineContainer,
		ImageRef:  ref,
		Container: ContainerName(cfg.RunID, cfg.Host),
		cfg:       cfg,
		chrootRun: chrootRun,
	}
	if dimg.Local {
		s.Version = dimg.Version
	}
	s.DataDir = filepath.Join(s.RunDir, "data")
	s.ErrorLog = filepath.Join(s.RunDir, "error.log")
	if err := s.startContainer(ctx, p, dimg); err != nil {
		s.mu.Lock()
		s.stopped = true
		cerr := s.teardown(0)
		s.mu.Unlock()
		return nil, errors.Join(err, cerr)
	}
	return s, nil
}

func (s *Server) startContainer(ctx context.Context, p *testcontainers.DockerProvider, dimg *DockerImage) error {
	f := flavors[s.Flavor]
	// A local image has the template's version: the data directory is a
	// copy of it, as for a process. Another image initializes an empty one
	// itself through its entrypoint.
	if err := s.prepareRunDir(dimg.Local); err != nil {
		return err
	}
	args := serverArgs(s.cfg, f, s.chrootRun)
	if !dimg.Local {
		if err := s.openRunDir(); err != nil {
			return err
		}
		// The official images' entrypoints take options only ("-..."),
		// put their daemon in front, and initialize the data directory.
		// An image without an entrypoint gets its command's program, or
		// the flavor's daemon by name.
		front := dimg.Entrypoint
		if len(front) == 0 && len(dimg.Cmd) > 0 {
			front = dimg.Cmd[:1]
		} else if len(front) == 0 {
			front = []string{filepath.Base(f.daemon)}
		}
		args = append(append([]string{}, front...), args[1:]...)
	}
	cmd := append([]string{"/bin/sh", "-c", gateScript, s.chrootRun + "/" + readyFile}, args...)

	entry := journal.Entry{Kind: journal.KindContainer, Name: s.Container}
	if err := s.cfg.Journal.Add(entry); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	s.ctr = &container{name: s.Container, entry: entry, pidfd: -1}
	env := map[string]string{}
	if !dimg.Local {
		// The entrypoints refuse to initialize without a root password
		// setting; the lab account comes from the init file as always.
		env["MYSQL_RANDOM_ROOT_PASSWORD"] = "yes"
		env["MARIADB_RANDOM_ROOT_PASSWORD"] = "yes"
	}
	req := testcontainers.ContainerRequest{
		Image:      dimg.Ref,
		Name:       s.Container,
		Entrypoint: cmd[:1],
		Cmd:        cmd[1:],
		Env:        env,
		Labels: map[string]string{
			journal.RunLabel: s.cfg.RunID,
			labelHost:        s.cfg.Host,
			labelFlavor:      s.Flavor,
		},
		HostConfigModifier: func(hc *dockercontainer.HostConfig) {
			hc.NetworkMode = "none"
			// Same path inside as in the chroot, so the command line is the
			// process engine's.
			hc.Binds = []string{s.RunDir + ":" + s.chrootRun}
			// The image's declared ports would be published otherwise;
			// nothing of the lab is reachable from the host.
			hc.PortBindings = nil
			hc.PublishAllPorts = false
		},
	}
	started := time.Now()
	tc, err := p.CreateContainer(ctx, req)
	if tc != nil {
		s.ctr.tc = tc
	}
	if err != nil {
		return fmt.Errorf("start %s: create container: %w", s.Flavor, err)
	}
	if err := tc.Start(ctx); err != nil {
		return fmt.Errorf("start %s: start container: %w", s.Flavor, err)
	}
	info, err := tc.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("start %s: inspect container: %w", s.Flavor, err)
	}
	if info.State == nil || info.State.Pid == 0 {
		return fmt.Errorf("start %s: %w: container %s is not running; log tail:\n%s", s.Flavor, ErrExited, s.Container, s.logTail())
	}
	s.PID = info.State.Pid
	if err := s.watchExit(); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}

	ns, err := s.cfg.Attach(fmt.Sprintf("/proc/%d/ns/net", s.PID))
	if err != nil {
		return fmt.Errorf("start %s: attach the lab link to container %s: %w", s.Flavor, s.Container, err)
	}
	s.cfg.NS = ns
	if err := os.WriteFile(filepath.Join(s.RunDir, readyFile), nil, 0o644); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	limit := readyCap
	if !dimg.Local {
		limit = containerReadyCap
	}
	if err := s.waitReadyFor(ctx, limit); err != nil {
		return err
	}
	s.StartToReady = time.Since(started)
	if s.Version == "" {
		v, err := s.queryVersion(ctx)
		if err != nil {
			return fmt.Errorf("start %s: %w", s.Flavor, err)
		}
		s.Version = v
	}
	os.Remove(filepath.Join(s.RunDir, "init.sql"))
	return nil
}

// openRunDir lets a server that drops root (the official images run it as
// user mysql) use the run directory: the directory is still only reachable
// through labrun's 0700 cache directories on the host.
func (s *Server) openRunDir() error {
	if err := os.Chmod(s.RunDir, 0o755); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	for _, d := range []string{"tmp", "run", "files", "data"} {
		if err := os.Chmod(filepath.Join(s.RunDir, d), 0o1777); err != nil {
			return fmt.Errorf("start %s: %w", s.Flavor, err)
		}
	}
	return os.Chmod(filepath.Join(s.RunDir, "init.sql"), 0o644)
}

// watchExit closes s.done when the container's first process ends, so that
// readiness stops waiting at once. A pidfd refers to that one process,
// whatever happens to its PID afterwards.
func (s *Server) watchExit() error {
	fd, err := unix.PidfdOpen(s.PID, 0)
	if err != nil {
		return fmt.Errorf("pidfd of container %s: %w", s.Container, err)
	}
	s.ctr.pidfd = fd
	s.done = make(chan struct{})
	go func() {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
				break
			}
		}
		s.waitErr = fmt.Errorf("container %s exited", s.Container)
		close(s.done)
	}()
	return nil
}

var versionOutRE = regexp.MustCompile(`^(\d+\.\d+\.\d+)`)

// queryVersion asks the server its version: an image other than labrun's
// carries none that labrun can read.
func (s *Server) queryVersion(ctx context.Context) (string, error) {
	db, err := s.OpenDB(s.cfg.NS)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("%w: SELECT VERSION() returned nothing", ErrNoVersion)
		}
		return "", fmt.Errorf("version: %w", err)
	}
	m := versionOutRE.FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("%w: %q", ErrNoVersion, v)
	}
	return m[1], nil
}

// endContainer stops the container (SIGTERM to the server, SIGKILL after
// grace) and removes it with its anonymous volumes. The run directory, a
// bind mount, stays on the host for the log copy.
func (s *Server) endContainer(grace time.Duration) error {
	c := s.ctr
	ctx, cancel := context.WithTimeout(context.Background(), grace+containerOpTimeout)
	defer cancel()
	var err error
	if c.tc != nil {
		err = c.tc.Terminate(ctx, testcontainers.StopTimeout(grace))
	}
	// Whatever testcontainers managed, the engine is asked directly too:
	// a container created but never handed back (a failed start) has no
	// handle, and a removal that failed halfway is retried.
	if uerr := journal.Undo(c.entry); uerr != nil {
		return errors.Join(err, uerr)
	}
	if c.pidfd >= 0 {
		// The server process is gone with its container; wait for the
		// watcher to see it, at most killWait.
		select {
		case <-s.done:
		case <-time.After(killWait):
			return fmt.Errorf("%w: container %s removed but pid %d still there", ErrStuck, c.name, s.PID)
		}
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	return s.cfg.Journal.Undone(c.entry)
}
