package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// flavor describes how one server flavor is installed and run. Paths are
// inside the flavor's root filesystem.
type flavor struct {
	suite    string   // the Debian suite debootstrap installs from
	packages []string // installed with --include on top of minbase
	daemon   string   // the server binary
	client   string   // the flavor's own CLI client
}

var flavors = map[string]flavor{
	// Oracle MySQL is packaged only in sid (mysql-server-core); the core
	// package carries mysqld without the maintainer scripts that would try
	// to start a service inside the chroot.
	"mysql": {
		suite:    "sid",
		packages: []string{"mysql-server-core", "mysql-client"},
		daemon:   "/usr/sbin/mysqld",
		client:   "/usr/bin/mysql",
	},
	"mariadb": {
		suite:    "bookworm",
		packages: []string{"mariadb-server", "mariadb-client"},
		daemon:   "/usr/sbin/mariadbd",
		client:   "/usr/bin/mariadb",
	},
}

const (
	// templateDir is the initialized data directory inside the root
	// filesystem that every run copies.
	templateDir = "/var/lib/labrun/template"
	// markerName is written next to the root filesystem as the last step of
	// a build; an image directory without it is incomplete.
	markerName = "image.json"
	rootfsName = "rootfs"
	// redoSize is the InnoDB redo log size, for the template and for every
	// run: 8 MiB is the smallest MySQL accepts and keeps the per-run copy
	// small. Labs that write a lot can raise it through Variables.
	redoSize = "8M"
	// bufferPoolSize is small so that a server starts in well under a
	// second; labs that need more set innodb_buffer_pool_size.
	bufferPoolSize = "32M"
	// logBufferSize is Oracle MySQL's redo log buffer for every run (not
	// the template); labs that write large transactions set
	// innodb_log_buffer_size.
	logBufferSize = "4M"
)

// CacheDir is where built images live: $LABRUN_CACHE, or /var/cache/labrun.
func CacheDir() string {
	if d := os.Getenv("LABRUN_CACHE"); d != "" {
		return d
	}
	return "/var/cache/labrun"
}

// Flavors lists the server flavors that can be built, sorted.
func Flavors() []string {
	out := make([]string, 0, len(flavors))
	for name := range flavors {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Image is a built root filesystem holding one server flavor and an
// initialized template data directory.
type Image struct {
	Flavor  string    `json:"flavor"`
	Version string    `json:"version"` // e.g. "9.7.4", from `mysqld --version`
	Suite   string    `json:"suite"`   // the Debian suite it was built from
	Built   time.Time `json:"built"`
	// Root is the root filesystem that servers and clients are chrooted
	// into; Dir is the image directory that holds Root and the marker.
	Root string `json:"-"`
	Dir  string `json:"-"`
}

func imagesDir() string { return filepath.Join(CacheDir(), "images") }

// notBuilt says how to build a flavor; why, if set, says what is wrong with
// what is there.
func notBuilt(name, why string) error {
	if why != "" {
		why = " (" + why + ")"
	}
	return fmt.Errorf("%w: run 'labrun images build %s'%s", ErrNotBuilt, name, why)
}

func lookupFlavor(name string) (flavor, error) {
	f, ok := flavors[name]
	if !ok {
		return flavor{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownFlavor, name, strings.Join(Flavors(), ", "))
	}
	return f, nil
}

// Find returns the cached image of a flavor. It returns an error wrapping
// ErrNotBuilt when the image is absent or incomplete.
func Find(name string) (*Image, error) {
	f, err := lookupFlavor(name)
	if err != nil {
		return nil, err
	}
	return readImage(filepath.Join(imagesDir(), name), name, f)
}

// readImage checks an image directory: the marker names the flavor, and
// the server binary and the template data directory exist.
func readImage(dir, name string, f flavor) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, notBuilt(name, "")
	}
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", name, err)
	}
	img := &Image{}
	if err := json.Unmarshal(b, img); err != nil || img.Flavor != name || img.Version == "" {
		return nil, notBuilt(name, "bad marker "+filepath.Join(dir, markerName))
	}
	img.Dir = dir
	img.Root = filepath.Join(dir, rootfsName)
	for _, p := range []string{f.daemon, f.client, filepath.Join(templateDir, "ibdata1")} {
		if _, err := os.Stat(filepath.Join(img.Root, p)); err != nil {
			return nil, notBuilt(name, "incomplete: "+p+" missing")
		}
	}
	return img, nil
}

// Build returns the cached image of a flavor, building it first if it is
// absent or incomplete. A build debootstraps into a temporary directory
// next to the final one, initializes the template data directory, writes
// the marker last and renames the directory into place, so a build killed
// at any point never looks complete. Concurrent builds of one flavor
// serialize on a lock file. Progress goes to log.
func Build(ctx context.Context, name string, log io.Writer) (*Image, error) {
	f, err := lookupFlavor(name)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	if img, err := Find(name); err == nil {
		return img, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("build %s: %w", name, ErrNeedRoot)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, ErrNoDebootstrap)
	}
	dir := imagesDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "."+name+".lock"))
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	defer unlock()
	// Another process may have finished the build while this one waited.
	if img, err := Find(name); err == nil {
		return img, nil
	}
	final := filepath.Join(dir, name)
	if err := removeStale(dir, name, final); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}

	tmp, err := os.MkdirTemp(dir, "."+name+".build-")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			removeTree(tmp)
		}
	}()
	rootfs := filepath.Join(tmp, rootfsName)

	t0 := time.Now()
	fmt.Fprintf(log, "debootstrap %s (%s) into %s\n", f.suite, strings.Join(f.packages, ", "), rootfs)
	boot := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(f.packages, ","), f.suite, rootfs)
	boot.Stdout, boot.Stderr = log, log
	killGroupOnCancel(boot)
	err = boot.Run()
	// debootstrap mounts /proc and /sys inside the target while it works and
	// leaves them mounted when it is killed.
	unmountUnder(tmp)
	if err != nil {
		return nil, fmt.Errorf("build %s: debootstrap: %w", name, err)
	}
	fmt.Fprintf(log, "debootstrap done in %s\n", time.Since(t0).Round(time.Second))
	// The downloaded packages are not needed once installed: about 80 MiB.
	debs, _ := filepath.Glob(filepath.Join(rootfs, "var/cache/apt/archives/*.deb"))
	for _, p := range debs {
		os.Remove(p)
	}

	out, err := chrootOutput(ctx, rootfs, f.daemon, "--version")
	if err != nil {
		return nil, fmt.Errorf("build %s: %s --version: %w", name, f.daemon, err)
	}
	version, err := parseVersion(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	fmt.Fprintf(log, "%s %s\n", name, version)

	t1 := time.Now()
	if err := os.MkdirAll(filepath.Join(rootfs, filepath.Dir(templateDir)), 0o700); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	// mariadb-install-db adds root@<this host's name>, which every run would
	// then log as ignored under --skip-name-resolve; drop it.
	if err := os.WriteFile(filepath.Join(rootfs, extraSQLPath), []byte(extraSQL), 0o644); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	initCmd := chrootCommand(ctx, rootfs, templateInitArgs(name, f)...)
	initCmd.Stdout, initCmd.Stderr = log, log
	if err := initCmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s: initialize template data directory: %w", name, err)
	}
	os.Remove(filepath.Join(rootfs, extraSQLPath))
	size, _ := treeSize(filepath.Join(rootfs, templateDir))
	fmt.Fprintf(log, "template data directory: %.1f MiB in %s\n", float64(size)/(1<<20), time.Since(t1).Round(time.Millisecond))

	img := &Image{Flavor: name, Version: version, Suite: f.suite, Built: time.Now().UTC()}
	if err := writeFileSync(filepath.Join(tmp, markerName), img); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	renamed = true
	syncDir(dir)
	fmt.Fprintf(log, "built %s %s in %s\n", name, version, final)
	return Find(name)
}

// templateInitArgs is the command, run chrooted into the image, that
// initializes the template data directory with the settings every run uses,
// so that a run's copy starts without resizing anything.
func templateInitArgs(name string, f flavor) []string {
	switch name {
	case "mysql":
		return []string{f.daemon, "--no-defaults", "--initialize-insecure", "--user=root",
			"--datadir=" + templateDir,
			"--innodb-redo-log-capacity=" + redoSize,
			"--innodb-buffer-pool-size=" + bufferPoolSize,
			"--performance-schema=OFF", "--skip-log-bin"}
	default:
		// --force skips the check that the host name resolves: the chroot
		// has no resolver configuration, and runs use --skip-name-resolve.
		return []string{"/usr/bin/mariadb-install-db", "--no-defaults", "--user=root",
			"--datadir=" + templateDir,
			"--auth-root-authentication-method=normal", "--skip-test-db",
			"--skip-name-resolve", "--force", "--extra-file=" + extraSQLPath,
			"--innodb-log-file-size=" + redoSize,
			"--innodb-buffer-pool-size=" + bufferPoolSize,
			"--skip-log-bin"}
	}
}

// extraSQL keeps only the loopback accounts of the initial grant tables.
const (
	extraSQLPath = "/tmp/labrun-template.sql"
	extraSQL     = "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n" +
		"DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n"
)

// Remove deletes the cached image of a flavor, so that the next Build
// starts afresh. It refuses while a run directory exists inside it.
func Remove(name string) error {
	if _, err := lookupFlavor(name); err != nil {
		return err
	}
	dir := imagesDir()
	final := filepath.Join(dir, name)
	if _, err := os.Stat(final); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockFile(context.Background(), filepath.Join(dir, "."+name+".lock"))
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	defer unlock()
	runs, _ := os.ReadDir(filepath.Join(final, rootfsName, runsDir))
	if len(runs) > 0 {
		return fmt.Errorf("remove %s: %w: %s", name, ErrInUse, filepath.Join(final, rootfsName, runsDir, runs[0].Name()))
	}
	// Rename first, so that the image stops looking complete at once.
	// The .build- prefix makes a later Build clean it up if this removal is
	// interrupted.
	doomed := filepath.Join(dir, fmt.Sprintf(".%s.build-removed-%d", name, time.Now().UnixNano()))
	if err := os.Rename(final, doomed); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return removeTree(doomed)
}

var versionRE = regexp.MustCompile(`\bVer\s+(\d+\.\d+\.\d+)`)

// parseVersion extracts "9.7.4" from `mysqld --version` output such as
// "/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))".
func parseVersion(out string) (string, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: %q", ErrNoVersion, strings.TrimSpace(out))
	}
	return m[1], nil
}

// removeStale removes what earlier, interrupted builds left: temporary
// build directories and an image directory without a valid marker. The
// caller holds the flavor's lock, so none of them is in use.
func removeStale(dir, name, final string) error {
	stale, _ := filepath.Glob(filepath.Join(dir, "."+name+".build-*"))
	if _, err := os.Stat(final); err == nil {
		stale = append(stale, final)
	}
	for _, p := range stale {
		if err := removeTree(p); err != nil {
			return err
		}
	}
	return nil
}

// removeTree removes a directory after unmounting anything below it, so
// that RemoveAll never descends into a mounted /proc or /sys.
func removeTree(p string) error {
	unmountUnder(p)
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// unmountUnder lazily unmounts every mount point at or below dir, deepest
// first, as listed in /proc/self/mountinfo.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountPath(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// unescapeMountPath decodes the octal escapes (\040 for a space) that
// mountinfo uses in paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lockFile takes an exclusive flock on path, polling once a second so that
// ctx can end the wait. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// chrootCommand returns a command run chrooted into root with a minimal
// environment, in its own process group so that a terminal's Ctrl-C reaches
// labrun (which then tears down in order) and not the child directly.
func chrootCommand(ctx context.Context, root string, args ...string) *exec.Cmd {
	// args[0] is absolute, so exec does no lookup on the host (where the
	// binary may not exist); the kernel resolves it after the chroot.
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.Env = chrootEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Setpgid: true}
	killGroupOnCancel(cmd)
	return cmd
}

var chrootEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "TZ=UTC"}

// killGroupOnCancel makes context cancellation kill the command's whole
// process group (debootstrap runs dpkg and apt as children), and bounds the
// wait for its output pipes to 5 s after that.
func killGroupOnCancel(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
}

func chrootOutput(ctx context.Context, root string, args ...string) (string, error) {
	cmd := chrootCommand(ctx, root, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func writeFileSync(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
