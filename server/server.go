// Package server runs the MySQL server under test: mysqld (Oracle MySQL) or
// mariadbd (MariaDB) from a cached Debian root filesystem, chrooted, in the
// server host's network namespace, with a per-run copy of a template data
// directory and a per-run random password.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/vishvananda/netns"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
)

// Sentinel errors; match them with errors.Is.
var (
	ErrNotBuilt         = errors.New("flavor not built")
	ErrUnknownFlavor    = errors.New("unknown flavor")
	ErrNeedRoot         = errors.New("needs root (debootstrap, chroot, network namespaces)")
	ErrNoDebootstrap    = errors.New("debootstrap not found: install the debootstrap package")
	ErrNoVersion        = errors.New("no version in server output")
	ErrInvalidConfig    = errors.New("invalid server config")
	ErrReservedVariable = errors.New("variable is managed by labrun")
	ErrRunDirExists     = errors.New("run directory already exists")
	ErrExited           = errors.New("server exited before it was ready")
	ErrNotReady         = errors.New("server not ready")
	ErrStuck            = errors.New("server process did not exit")
	ErrInUse            = errors.New("image in use by a run")
)

const (
	// User is the lab account created in every run, with all privileges,
	// reachable from any address of the lab network.
	User = "labrun"
	// runsDir holds the per-run directories inside the image root.
	runsDir = "/var/lib/labrun-runs"
	// readyCap bounds the wait for readiness whatever the caller's context.
	readyCap = 60 * time.Second
	// readyPoll is the interval between readiness probes; it is also the
	// resolution of the measured start-to-ready time. A probe before the
	// server listens is a refused connect inside the namespace, which costs
	// microseconds, so a short interval only trims the wait (2.5 ms on
	// average instead of 10 ms at 20 ms).
	readyPoll = 5 * time.Millisecond
	// stopGrace is how long Stop lets the server shut down after SIGTERM
	// before SIGKILL. A run's data directory is discarded after the stop,
	// so nothing needs the shutdown's flushes: MariaDB finishes within it
	// (25 ms measured, 77 ms in a container), Oracle MySQL does not (its
	// InnoDB master thread sleeps in whole seconds and is waited for,
	// 0.5 s on average), and waiting for it was most of a scenario's
	// overhead. The error log copy says which happened (logEnding).
	stopGrace = 150 * time.Millisecond
	// killWait is how long to wait after SIGKILL. A process in
	// uninterruptible sleep (a frozen filesystem) can outlive it.
	killWait = 10 * time.Second
	// logTailLines is how much of the error log an error message carries.
	logTailLines = 25
	// ErrorLogName is the file name of the error log copied to Config.LogDir.
	ErrorLogName = "server-error.log"
)

// Config describes one server of one run.
type Config struct {
	RunID  string
	Flavor string
	// NS is the server host's network namespace; mysqld is started in it
	// and readiness is probed from it.
	NS netns.NsHandle
	// Address is the lab address the server binds (bind_address).
	Address netip.Addr
	Port    int
	// Variables are extra server options, passed as --name=value after
	// labrun's own, so they override the defaults (buffer pool, redo log
	// size, throwawayArgs); options labrun manages (datadir, port, ...) are
	// refused.
	Variables map[string]string
	// Journal records the per-run directory and the process as they are
	// created, for `labrun cleanup` after a SIGKILL.
	Journal *journal.Journal
	// LogDir receives a copy of the server's error log, with the password
	// redacted, when the server stops; empty means no copy.
	LogDir string
	// PrepareDataDir, if set, is called with the host path of the empty
	// data directory before the template is copied into it: the place to
	// mount a separate filesystem for disk faults. Anything mounted there is
	// unmounted lazily before the run directory is removed.
	PrepareDataDir func(dir string) error

	// Engine is EngineProcess (default) or EngineContainer.
	Engine string
	// Image is the container engine's image; empty means the local image of
	// the flavor's root filesystem, labrun/FLAVOR:VERSION.
	Image string
	// Host names the server host; the container is "lr-<run>-<host>", like
	// the host's namespace. Default "server".
	Host string
	// Attach is the container engine's way into the lab network: it is
	// called with the path of the container's network namespace
	// (/proc/PID/ns/net) once the container runs and before mysqld starts,
	// must plug the host's lab link into it with Address (and apply the
	// host's sysctls), and returns a handle to it, which then serves as NS.
	Attach func(nsPath string) (netns.NsHandle, error)
}

// Server is a running server.
type Server struct {
	Flavor, Version string
	Addr            netip.AddrPort
	// User and Password are the lab account. The password is random per run;
	// pass text through Redact before it leaves the process.
	User, Password string
	Image          *Image
	PID            int

	// RunDir is the host path of the per-run directory (inside the image
	// root); DataDir is its data directory. Both are removed by Stop.
	RunDir, DataDir string
	// ErrorLog is the host path of the live error log.
	ErrorLog string
	// LogCopy is where Stop copies the error log (empty without LogDir).
	LogCopy string

	// CopyBytes and CopyTime measure the copy of the template data
	// directory; StartToReady runs from exec (process engine) or from the
	// container's creation (container engine) to the first successful Ping.
	CopyBytes    int64
	CopyTime     time.Duration
	StartToReady time.Duration

	// Engine is how the server runs; ImageRef and Container are the
	// container engine's image and container name.
	Engine    string
	ImageRef  string
	Container string

	cfg       Config
	chrootRun string // RunDir as seen inside the chroot
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has been reaped
	waitErr   error
	procEntry *journal.Entry
	dirEntry  *journal.Entry
	ctr       *container

	mu      sync.Mutex
	stopped bool
	// stopAt is when Stop began; zero until then.
	stopAt  time.Time
	stopErr error
}

// String describes the server without its password.
func (s *Server) String() string {
	return fmt.Sprintf("%s %s on %s (pid %d)", s.Flavor, s.Version, s.Addr, s.PID)
}

// Redact replaces the run's password in text.
func (s *Server) Redact(text string) string {
	if s.Password == "" {
		return text
	}
	return strings.ReplaceAll(text, s.Password, "<redacted>")
}

var (
	runIDRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	variableRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
)

// reserved are the options labrun sets itself; overriding them would
// break readiness, cleanup or isolation. Names are normalized to
// underscores.
var reserved = map[string]bool{
	"basedir": true, "bind_address": true, "datadir": true, "defaults_extra_file": true,
	"defaults_file": true, "init_file": true, "log_error": true, "no_defaults": true,
	"pid_file": true, "port": true, "skip_networking": true, "socket": true,
	"tmpdir": true, "user": true, "secure_file_priv": true, "mysqlx": true,
	"admin_address": true, "skip_grant_tables": true,
}

func (c Config) validate() error {
	var probs []string
	if !runIDRE.MatchString(c.RunID) {
		probs = append(probs, fmt.Sprintf("run ID %q: want letters, digits, '.', '_' or '-'", c.RunID))
	}
	switch c.Engine {
	case "", EngineProcess:
	case EngineContainer:
		if c.Attach == nil {
			probs = append(probs, "attach: required by the container engine, to plug the lab link into the container")
		}
	default:
		probs = append(probs, fmt.Sprintf("engine %q: %v (want %s)", c.Engine, ErrUnknownEngine, strings.Join(Engines(), ", ")))
	}
	if _, ok := flavors[c.Flavor]; !ok {
		probs = append(probs, fmt.Sprintf("flavor %q: want one of %s", c.Flavor, strings.Join(Flavors(), ", ")))
	}
	if !c.Address.IsValid() || c.Address.IsUnspecified() {
		probs = append(probs, fmt.Sprintf("address %q: want a lab address, not empty or unspecified", c.Address))
	}
	if c.Port < 1 || c.Port > 65535 {
		probs = append(probs, fmt.Sprintf("port %d: want 1-65535", c.Port))
	}
	if c.Journal == nil {
		probs = append(probs, "journal: required, every resource is recorded in it")
	}
	for _, name := range sortedKeys(c.Variables) {
		value := c.Variables[name]
		norm := strings.ReplaceAll(name, "-", "_")
		switch {
		case !variableRE.MatchString(name):
			probs = append(probs, fmt.Sprintf("variable %q: want letters, digits, '_' or '-'", name))
		case reserved[norm] || reserved[strings.TrimPrefix(norm, "skip_")] || reserved[strings.TrimPrefix(norm, "loose_")]:
			probs = append(probs, fmt.Sprintf("variable %q: %v", name, ErrReservedVariable))
		case strings.ContainsAny(value, "\x00\n"):
			probs = append(probs, fmt.Sprintf("variable %q: value contains a newline or NUL", name))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(probs, "; "))
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// serverArgs is the server's command line; run is the per-run directory as
// seen inside the chroot. No secret appears in it: the password reaches the
// server through the init file.
func serverArgs(cfg Config, f flavor, run string) []string {
	args := []string{
		f.daemon,
		// Ignore the image's /etc/mysql: everything is on this line.
		"--no-defaults",
		// Root inside the chroot owns the copied data directory; the mysql
		// rootfs has no mysql user at all.
		"--user=root",
		"--datadir=" + run + "/data",
		"--tmpdir=" + run + "/tmp",
		"--socket=" + run + "/run/mysqld.sock",
		"--pid-file=" + run + "/run/mysqld.pid",
		"--log-error=" + run + "/error.log",
		"--init-file=" + run + "/init.sql",
		// The compiled-in default, /var/lib/mysql-files, does not exist in
		// the image and mysqld refuses to start without it.
		"--secure-file-priv=" + run + "/files",
		"--bind-address=" + cfg.Address.String(),
		"--port=" + strconv.Itoa(cfg.Port),
		"--skip-name-resolve",
		"--skip-log-bin",
		"--performance-schema=OFF",
		"--innodb-buffer-pool-size=" + bufferPoolSize,
	}
	switch cfg.Flavor {
	case "mysql":
		args = append(args, throwawayArgs...)
		args = append(args,
			"--innodb-redo-log-capacity="+redoSize,
			// The default, 64 MiB, took about 20 ms of InnoDB's start to
			// set up; a lab's transactions are far smaller than 4 MiB.
			"--innodb-log-buffer-size="+logBufferSize,
			// MySQL 9.7 has no --ssl or --skip-ssl any more ("unknown
			// option"); an empty TLS version list is the documented way to
			// refuse TLS. The server logs two warnings about it.
			"--tls-version=",
			// The X plugin would otherwise listen on 33060 on every address
			// and on a socket in /var/run/mysqld.
			"--mysqlx=OFF",
		)
	case "mariadb":
		args = append(args,
			"--innodb-log-file-size="+redoSize,
			"--skip-ssl",
		)
	}
	for _, name := range sortedKeys(cfg.Variables) {
		args = append(args, "--"+name+"="+cfg.Variables[name])
	}
	return args
}

// throwawayArgs turn off what Oracle MySQL does for a data directory that
// must survive a crash or a restart: each run's copy is removed after one
// shutdown. They come before Config.Variables, so a scenario can turn any of
// them back on. Measured with BenchmarkStartToReady on MySQL 9.7 (2 CPUs,
// ext4), together with the smaller log buffer and the files copyTemplate
// leaves out: start to ready fell from about 470 to 410 ms, a stop from
// about 1.2 s to 0.56 s. The shutdown stays a real one and the error log
// keeps all its lines. What is left of a stop is InnoDB's master
// thread, which sleeps 1 s at a time and is waited for: 0 to 1 s, 0.5 s on
// average, and no option shortens that sleep (innodb_force_recovery=2, which
// has no master thread, makes InnoDB refuse every write). MariaDB stops in
// about 25 ms and gains nothing measurable from these.
var throwawayArgs = []string{
	// With libaio each InnoDB I/O thread waits in io_getevents with a
	// 500 ms timeout and sees the shutdown only when it expires: about
	// 0.5 s of every stop. InnoDB's own I/O threads wait on an event that
	// the shutdown sets. A lab that studies InnoDB's I/O path can set
	// innodb_use_native_aio=ON.
	"--innodb-use-native-aio=OFF",
	// No flush of the buffer pool and no final checkpoint at shutdown: the
	// next start would run crash recovery, and there is none. The error log
	// still ends with "Shutdown complete".
	"--innodb-fast-shutdown=2",
	// The doublewrite buffer repairs torn pages in crash recovery; reading
	// its 16 MiB of files at start took about 50 ms. copyTemplate leaves
	// the files out: with doublewrite ON InnoDB creates them again.
	"--innodb-doublewrite=OFF",
	// The list of cached pages is written at shutdown and read back at the
	// next start, which never comes.
	"--innodb-buffer-pool-dump-at-shutdown=OFF",
	"--innodb-buffer-pool-load-at-startup=OFF",
}

// initSQL creates or resets the lab account. The template is copied, so the
// account normally does not exist yet; ALTER makes a reused directory safe.
func initSQL(flavorName, password string) string {
	auth := "IDENTIFIED WITH caching_sha2_password BY '" + password + "'"
	if flavorName == "mariadb" {
		auth = "IDENTIFIED VIA mysql_native_password USING PASSWORD('" + password + "')"
	}
	acct := "'" + User + "'@'%'"
	return "CREATE USER IF NOT EXISTS " + acct + " " + auth + ";\n" +
		"ALTER USER " + acct + " " + auth + ";\n" +
		"GRANT ALL PRIVILEGES ON *.* TO " + acct + " WITH GRANT OPTION;\n"
}

// clientDefaults is the CLI client's option file: user and password, so
// that neither is on a command line.
func clientDefaults(password string) string {
	return "[client]\nuser=" + User + "\npassword=" + password + "\n"
}

// newPassword returns 32 hex digits (128 bits) from crypto/rand: no quoting
// is needed in SQL or in an option file.
func newPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Start starts a server for one run and returns once the lab account can log
// in over TCP from inside cfg.NS. The per-run directory and the process are
// recorded in cfg.Journal as they are created; on error everything Start
// created is removed again.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Engine == EngineContainer {
		return startContainer(ctx, cfg)
	}
	img, err := Find(cfg.Flavor)
	if err != nil {
		return nil, err
	}
	f := flavors[cfg.Flavor]
	password, err := newPassword()
	if err != nil {
		return nil, err
	}
	chrootRun := runsDir + "/" + cfg.RunID
	s := &Server{
		Flavor:    cfg.Flavor,
		Version:   img.Version,
		Addr:      netip.AddrPortFrom(cfg.Address, uint16(cfg.Port)),
		User:      User,
		Password:  password,
		Image:     img,
		RunDir:    filepath.Join(img.Root, chrootRun),
		Engine:    EngineProcess,
		cfg:       cfg,
		chrootRun: chrootRun,
	}
	s.DataDir = filepath.Join(s.RunDir, "data")
	s.ErrorLog = filepath.Join(s.RunDir, "error.log")
	if err := s.start(ctx, f); err != nil {
		s.mu.Lock()
		s.stopped = true
		cerr := s.teardown(0)
		s.mu.Unlock()
		return nil, errors.Join(err, cerr)
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, f flavor) error {
	if err := s.prepareRunDir(true); err != nil {
		return err
	}
	// Whatever the server prints before its error log is open (an unknown
	// option, for one) goes to stderr.log.
	out, err := os.OpenFile(filepath.Join(s.RunDir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	defer out.Close()
	// Not CommandContext: the server outlives Start's context and is ended
	// by Stop. No Pdeathsig either: netem.Start forks from a thread that is
	// thrown away at once, and the signal would fire then.
	cmd := exec.Command(f.daemon)
	cmd.Args = serverArgs(s.cfg, f, s.chrootRun)
	cmd.Dir = "/"
	cmd.Env = chrootEnv
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: s.Image.Root, Setpgid: true}
	started := time.Now()
	if err := netem.Start(s.cfg.NS, cmd); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	s.cmd, s.PID = cmd, cmd.Process.Pid
	s.done = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	procEntry := journal.Entry{Kind: journal.KindProcess, PID: s.PID,
		StartTime: journal.ProcessStartTime(s.PID), Name: filepath.Base(f.daemon)}
	s.procEntry = &procEntry
	if err := s.cfg.Journal.Add(procEntry); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}

	if err := s.waitReady(ctx); err != nil {
		return err
	}
	s.StartToReady = time.Since(started)
	// The server has read its init file; the password need not stay on disk
	// in it (client.cnf keeps it, 0600, until Stop).
	os.Remove(filepath.Join(s.RunDir, "init.sql"))
	return nil
}

// prepareRunDir creates the per-run directory, journaled, with its data
// directory (a copy of the template when withTemplate), the init file and
// the CLI client's option file.
func (s *Server) prepareRunDir(withTemplate bool) error {
	if err := os.MkdirAll(filepath.Dir(s.RunDir), 0o700); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	if _, err := os.Lstat(s.RunDir); err == nil {
		return fmt.Errorf("start %s: %w: %s", s.Flavor, ErrRunDirExists, s.RunDir)
	}
	// Journal first: a run killed between here and Mkdir leaves an entry
	// for a missing directory, which cleanup tolerates; the reverse order
	// could leave an unrecorded directory.
	dirEntry := journal.Entry{Kind: journal.KindDir, Path: s.RunDir, Name: s.Flavor + " run directory"}
	if err := s.cfg.Journal.Add(dirEntry); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	if err := os.Mkdir(s.RunDir, 0o700); err != nil {
		// Not ours to remove (it may have appeared since the check above).
		return errors.Join(fmt.Errorf("start %s: %w", s.Flavor, err), s.cfg.Journal.Undone(dirEntry))
	}
	s.dirEntry = &dirEntry
	for _, d := range []string{"tmp", "run", "files", "data"} {
		if err := os.Mkdir(filepath.Join(s.RunDir, d), 0o700); err != nil {
			return fmt.Errorf("start %s: %w", s.Flavor, err)
		}
	}
	if s.cfg.PrepareDataDir != nil {
		if err := s.cfg.PrepareDataDir(s.DataDir); err != nil {
			return fmt.Errorf("start %s: prepare data directory: %w", s.Flavor, err)
		}
	}
	if withTemplate {
		t0 := time.Now()
		n, err := copyTemplate(filepath.Join(s.Image.Root, templateDir), s.DataDir)
		s.CopyBytes, s.CopyTime = n, time.Since(t0)
		if err != nil {
			return fmt.Errorf("start %s: %w", s.Flavor, err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.RunDir, "init.sql"), []byte(initSQL(s.Flavor, s.Password)), 0o600); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	if err := os.WriteFile(filepath.Join(s.RunDir, "client.cnf"), []byte(clientDefaults(s.Password)), 0o600); err != nil {
		return fmt.Errorf("start %s: %w", s.Flavor, err)
	}
	return nil
}

// copyTemplate copies the template data directory into dst, which exists
// and is empty (it may be a mount point), without the files that notCopied
// names.
func copyTemplate(src, dst string) (int64, error) {
	ents, err := os.ReadDir(src)
	if err != nil {
		return 0, fmt.Errorf("copy template: %w", err)
	}
	var total int64
	for _, e := range ents {
		var n int64
		if notCopied(e.Name()) {
			continue
		}
		if e.IsDir() {
			dir := e.Name()
			n, err = copyTree(filepath.Join(src, dir), filepath.Join(dst, dir), func(rel string) bool {
				return notCopied(dir + "/" + rel)
			})
		} else if e.Type().IsRegular() {
			info, ierr := e.Info()
			if ierr != nil {
				return total, fmt.Errorf("copy template: %w", ierr)
			}
			n, err = copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), info.Mode().Perm())
		}
		total += n
		if err != nil {
			return total, fmt.Errorf("copy template: %w", err)
		}
	}
	return total, nil
}

// waitReady polls until a TCP connect to the server succeeds from inside
// the server's namespace and the lab account can Ping over it. The server
// may accept connections before it has run its init file, so a refused
// login is retried too.
func (s *Server) waitReady(parent context.Context) error {
	return s.waitReadyFor(parent, readyCap)
}

// waitReadyFor is waitReady with another bound than readyCap.
func (s *Server) waitReadyFor(parent context.Context, readyCap time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, readyCap)
	defer cancel()
	dial := DialContextIn(s.cfg.NS)
	var last error
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		last = s.probe(ctx, dial)
		if last == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("start %s: %w (%v); log tail:\n%s", s.Flavor, ErrExited, s.waitErr, s.logTail())
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return fmt.Errorf("start %s: %w", s.Flavor, err)
			}
			return fmt.Errorf("start %s: %w after %s: %s; log tail:\n%s",
				s.Flavor, ErrNotReady, readyCap, s.Redact(fmt.Sprint(last)), s.logTail())
		case <-tick.C:
		}
	}
}

// probe connects once and pings over that same connection. A bare TCP
// connect that is closed without a handshake would make MariaDB log an
// "Aborted connection" warning for every probe.
func (s *Server) probe(ctx context.Context, dial func(context.Context, string) (net.Conn, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := dial(dctx, s.Addr.String())
	dcancel()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	handed := false
	mcfg := s.DSNConfig()
	mcfg.DialFunc = func(context.Context, string, string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if handed {
			return nil, errProbeUsed
		}
		handed = true
		return c, nil
	}
	mcfg.ReadTimeout = 5 * time.Second
	mcfg.WriteTimeout = 5 * time.Second
	// The driver logs every refused probe to stderr otherwise.
	mcfg.Logger = nopLogger{}
	conn, err := mysql.NewConnector(mcfg)
	if err != nil {
		c.Close()
		return err
	}
	db := sql.OpenDB(conn)
	err = db.PingContext(ctx)
	db.Close()
	mu.Lock()
	if !handed {
		c.Close()
	}
	mu.Unlock()
	return err
}

// errProbeUsed stops database/sql from retrying a probe on a new
// connection: each probe is one connection.
var errProbeUsed = errors.New("probe connection already used")

type nopLogger struct{}

func (nopLogger) Print(...any) {}

// logTail returns the last lines of the server's stderr and error log, with
// the password redacted.
func (s *Server) logTail() string {
	var b bytes.Buffer
	for _, name := range []string{"stderr.log", "error.log"} {
		data, err := os.ReadFile(filepath.Join(s.RunDir, name))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", name, strings.Join(lines, "\n"))
	}
	return s.Redact(b.String())
}

// Stop shuts the server down gracefully (SIGTERM, then SIGKILL after 10 s),
// copies its error log to LogDir and removes the per-run directory, marking
// each resource undone in the journal. It is idempotent and safe for
// concurrent use.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	s.stopAt = time.Now()
	s.stopErr = s.teardown(stopGrace)
	return s.stopErr
}

// teardown ends the process (grace 0: SIGKILL at once) and removes the run
// directory. The caller holds s.mu.
func (s *Server) teardown(grace time.Duration) error {
	var errs []error
	if s.ctr != nil {
		if err := s.endContainer(grace); err != nil {
			// As for a process: the directory stays with the container.
			return fmt.Errorf("stop %s: %w", s.Flavor, err)
		}
	}
	if s.cmd != nil {
		if err := s.endProcess(grace); err != nil {
			// The directory stays: the process may still write to it, and
			// the journal still lists both for `labrun cleanup`.
			return fmt.Errorf("stop %s: %w", s.Flavor, err)
		}
		if s.procEntry != nil {
			if err := s.cfg.Journal.Undone(*s.procEntry); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.dirEntry != nil {
		if err := s.copyLog(); err != nil {
			errs = append(errs, err)
		}
		if err := removeTree(s.RunDir); err != nil {
			errs = append(errs, err)
		} else if err := s.cfg.Journal.Undone(*s.dirEntry); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop %s: %w", s.Flavor, err)
	}
	return nil
}

func (s *Server) endProcess(grace time.Duration) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	sig := syscall.SIGTERM
	if grace == 0 {
		sig = syscall.SIGKILL
	}
	// The process is still unreaped (done is open), so its PID cannot have
	// been reused.
	s.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-s.done:
			return nil
		case <-time.After(grace):
			s.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%w: pid %d still there %s after SIGKILL", ErrStuck, s.PID, killWait)
	}
}

// shutdownMarker is the line both flavors log last in a clean shutdown
// ("/usr/sbin/mysqld: Shutdown complete").
const shutdownMarker = "Shutdown complete"

// logEnding is the line labrun appends to the copy of an error log whose
// server did not finish its shutdown within stopGrace, so that the log says
// why it ends where it ends rather than looking cut off.
func logEnding(at time.Time) string {
	return fmt.Sprintf("%s labrun: the server had not finished its shutdown within %s of SIGTERM at the end of the scenario and was stopped with SIGKILL; its data directory is discarded, so its shutdown was not waited for. Every line it logged until then is above.\n",
		at.UTC().Format("2006-01-02T15:04:05.000000Z"), stopGrace)
}

// copyLog copies the error log, redacted, to LogDir for the report.
func (s *Server) copyLog() error {
	if s.cfg.LogDir == "" {
		return nil
	}
	data, err := os.ReadFile(s.ErrorLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy error log: %w", err)
	}
	if err := os.MkdirAll(s.cfg.LogDir, 0o750); err != nil {
		return fmt.Errorf("copy error log: %w", err)
	}
	text := s.Redact(string(data))
	if !s.stopAt.IsZero() && !strings.Contains(text, shutdownMarker) {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += logEnding(time.Now())
	}
	dst := filepath.Join(s.cfg.LogDir, ErrorLogName)
	if err := os.WriteFile(dst, []byte(text), 0o640); err != nil {
		return fmt.Errorf("copy error log: %w", err)
	}
	s.LogCopy = dst
	return nil
}

// DSNConfig is a go-sql-driver configuration for the lab account over plain
// TCP. The caller sets DialFunc (see DialContextIn), since the server is
// reachable only from inside the lab's namespaces. Over plain TCP, Oracle
// MySQL's caching_sha2_password makes the driver fetch the server's RSA key
// on a first login and send the password encrypted with it.
func (s *Server) DSNConfig() *mysql.Config {
	c := mysql.NewConfig()
	c.Net = "tcp"
	c.Addr = s.Addr.String()
	c.User = s.User
	c.Passwd = s.Password
	return c
}

// Connector returns a connector for the lab account whose connections are
// dialled from inside the namespace ns.
func (s *Server) Connector(ns netns.NsHandle) (driver.Connector, error) {
	c := s.DSNConfig()
	c.DialFunc = dialFuncIn(ns)
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	return conn, nil
}

// OpenDB returns a pool for the lab account dialling from inside ns.
func (s *Server) OpenDB(ns netns.NsHandle) (*sql.DB, error) {
	conn, err := s.Connector(ns)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// ClientCommand returns the flavor's own CLI client (mysql or mariadb),
// chrooted into the image, connecting over TCP to the server with the lab
// account; user and password come from a 0600 option file in the run
// directory. args follow the connection options. The caller starts it in a
// namespace with netem.Start; SysProcAttr carries the chroot, so keep it.
//
// With the container engine the client is still the one of the flavor's
// root filesystem (the local image is made from it, so it is the same
// version); a server from another image has no such client unless the
// flavor's root filesystem is built, and the command then fails to start
// with a message that says so.
func (s *Server) ClientCommand(args ...string) *exec.Cmd {
	f := flavors[s.Flavor]
	full := []string{f.client,
		// An option file must be the first option.
		"--defaults-file=" + s.chrootRun + "/client.cnf",
		"--protocol=TCP",
		"-h", s.Addr.Addr().String(),
		"-P", strconv.Itoa(int(s.Addr.Port())),
	}
	switch s.Flavor {
	case "mysql":
		// Plain TCP, as the server refuses TLS; with caching_sha2_password
		// the client then needs the server's RSA key to send the password.
		full = append(full, "--ssl-mode=DISABLED", "--get-server-public-key")
	case "mariadb":
		full = append(full, "--skip-ssl")
	}
	full = append(full, args...)
	cmd := exec.Command(f.client)
	cmd.Args = full
	cmd.Dir = "/"
	cmd.Env = chrootEnv
	if s.Image == nil {
		// Start returns Err without running anything.
		cmd.Err = fmt.Errorf("%w: the %s client comes from its root filesystem: run 'labrun images build %s'", ErrNotBuilt, s.Flavor, s.Flavor)
		return cmd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: s.Image.Root}
	return cmd
}

// DialContextIn returns a dial function (go-sql-driver's DialContextFunc,
// usable with mysql.RegisterDialContext) whose TCP sockets are created inside
// the namespace ns. A socket belongs to the namespace of the thread that
// creates it and keeps it afterwards, so only the dial runs on a thread in ns.
func DialContextIn(ns netns.NsHandle) func(ctx context.Context, addr string) (net.Conn, error) {
	dial := dialFuncIn(ns)
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return dial(ctx, "tcp", addr)
	}
}

// dialFuncIn is DialContextIn with a network argument, the shape of
// mysql.Config.DialFunc.
func dialFuncIn(ns netns.NsHandle) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := netem.Do(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
