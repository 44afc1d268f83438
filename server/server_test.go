package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
)

var testAddr = netip.MustParseAddr("10.89.251.1")

func TestValidate(t *testing.T) {
	j := &journal.Journal{}
	base := Config{RunID: "r1", Flavor: "mysql", Address: testAddr, Port: 3306, Journal: j}
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" means valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"valid variables", func(c *Config) {
			c.Variables = map[string]string{"wait_timeout": "5", "net-write-timeout": "60", "sql_mode": ""}
		}, ""},
		{"empty run ID", func(c *Config) { c.RunID = "" }, `run ID ""`},
		{"run ID with slash", func(c *Config) { c.RunID = "../etc" }, `run ID "../etc"`},
		{"unknown flavor", func(c *Config) { c.Flavor = "postgres" }, `flavor "postgres": want one of mariadb, mysql`},
		{"no address", func(c *Config) { c.Address = netip.Addr{} }, "address"},
		{"unspecified address", func(c *Config) { c.Address = netip.IPv4Unspecified() }, `address "0.0.0.0"`},
		{"port zero", func(c *Config) { c.Port = 0 }, "port 0: want 1-65535"},
		{"port too big", func(c *Config) { c.Port = 70000 }, "port 70000"},
		{"no journal", func(c *Config) { c.Journal = nil }, "journal: required"},
		{"reserved", func(c *Config) { c.Variables = map[string]string{"datadir": "/x"} }, `variable "datadir": variable is managed by labrun`},
		{"reserved dashed", func(c *Config) { c.Variables = map[string]string{"bind-address": "0.0.0.0"} }, `variable "bind-address": variable is managed`},
		{"reserved skip", func(c *Config) { c.Variables = map[string]string{"skip-networking": "1"} }, `variable "skip-networking": variable is managed`},
		{"reserved loose", func(c *Config) { c.Variables = map[string]string{"loose_init_file": "/x"} }, `variable "loose_init_file": variable is managed`},
		{"bad name", func(c *Config) { c.Variables = map[string]string{"a b": "1"} }, `variable "a b": want letters`},
		{"newline", func(c *Config) { c.Variables = map[string]string{"init_connect": "x\ny"} }, "contains a newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			err := c.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestServerArgs(t *testing.T) {
	tests := []struct {
		flavor  string
		want    []string
		notWant []string
	}{
		{"mysql", []string{"/usr/sbin/mysqld", "--no-defaults", "--tls-version=", "--mysqlx=OFF", "--innodb-redo-log-capacity=8M",
			"--innodb-use-native-aio=OFF", "--innodb-fast-shutdown=2", "--innodb-doublewrite=OFF",
			"--innodb-buffer-pool-dump-at-shutdown=OFF", "--innodb-buffer-pool-load-at-startup=OFF",
			"--innodb-log-buffer-size=4M"}, []string{"--skip-ssl"}},
		{"mariadb", []string{"/usr/sbin/mariadbd", "--no-defaults", "--skip-ssl", "--innodb-log-file-size=8M"},
			[]string{"--tls-version=", "--mysqlx=OFF", "--innodb-use-native-aio=OFF", "--innodb-doublewrite=OFF"}},
	}
	for _, tt := range tests {
		t.Run(tt.flavor, func(t *testing.T) {
			cfg := Config{RunID: "r1", Flavor: tt.flavor, Address: testAddr, Port: 3307,
				Variables: map[string]string{"wait_timeout": "5", "innodb_buffer_pool_size": "128M", "innodb_use_native_aio": "ON"}}
			args := serverArgs(cfg, flavors[tt.flavor], "/var/lib/labrun-runs/r1")
			if args[0] != tt.want[0] || args[1] != "--no-defaults" {
				t.Errorf("args start %q, want %q then --no-defaults (it must come first)", args[:2], tt.want[0])
			}
			common := []string{"--user=root", "--bind-address=10.89.251.1", "--port=3307",
				"--datadir=/var/lib/labrun-runs/r1/data", "--socket=/var/lib/labrun-runs/r1/run/mysqld.sock",
				"--init-file=/var/lib/labrun-runs/r1/init.sql", "--log-error=/var/lib/labrun-runs/r1/error.log",
				"--skip-name-resolve", "--skip-log-bin", "--performance-schema=OFF"}
			for _, w := range append(common, tt.want...) {
				if !slices.Contains(args, w) {
					t.Errorf("args lack %q: %q", w, args)
				}
			}
			for _, w := range tt.notWant {
				if slices.Contains(args, w) {
					t.Errorf("args contain %q", w)
				}
			}
			// Variables come last, sorted, so that they override defaults,
			// labrun's throwaway settings included.
			if got := args[len(args)-3:]; !slices.Equal(got, []string{"--innodb_buffer_pool_size=128M", "--innodb_use_native_aio=ON", "--wait_timeout=5"}) {
				t.Errorf("args end %q", got)
			}
		})
	}
}

func TestInitSQL(t *testing.T) {
	for _, f := range Flavors() {
		sql := initSQL(f, "0123abcd")
		for _, w := range []string{"CREATE USER IF NOT EXISTS 'labrun'@'%'", "ALTER USER 'labrun'@'%'",
			"GRANT ALL PRIVILEGES ON *.* TO 'labrun'@'%'", "0123abcd"} {
			if !strings.Contains(sql, w) {
				t.Errorf("%s init SQL lacks %q:\n%s", f, w, sql)
			}
		}
	}
	if !strings.Contains(initSQL("mysql", "x"), "caching_sha2_password") ||
		!strings.Contains(initSQL("mariadb", "x"), "mysql_native_password") {
		t.Error("init SQL does not name the flavor's authentication plugin")
	}
}

func TestNewPassword(t *testing.T) {
	a, err := newPassword()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newPassword()
	if len(a) != 32 || a == b {
		t.Errorf("passwords %q, %q: want 32 hex digits, different", a, b)
	}
}

func TestClientCommand(t *testing.T) {
	tests := []struct {
		flavor string
		want   []string
	}{
		{"mysql", []string{"/usr/bin/mysql", "--defaults-file=/var/lib/labrun-runs/r1/client.cnf", "--protocol=TCP",
			"-h", "10.89.251.1", "-P", "3307", "--ssl-mode=DISABLED", "--get-server-public-key", "-e", "select 1"}},
		{"mariadb", []string{"/usr/bin/mariadb", "--defaults-file=/var/lib/labrun-runs/r1/client.cnf", "--protocol=TCP",
			"-h", "10.89.251.1", "-P", "3307", "--skip-ssl", "-e", "select 1"}},
	}
	for _, tt := range tests {
		s := &Server{Flavor: tt.flavor, Addr: netip.AddrPortFrom(testAddr, 3307), Password: "sekret",
			Image: &Image{Root: "/cache/images/" + tt.flavor + "/rootfs"}, chrootRun: "/var/lib/labrun-runs/r1"}
		cmd := s.ClientCommand("-e", "select 1")
		if !slices.Equal(cmd.Args, tt.want) {
			t.Errorf("%s: args %q, want %q", tt.flavor, cmd.Args, tt.want)
		}
		if cmd.Path != tt.want[0] || cmd.SysProcAttr.Chroot != s.Image.Root || cmd.Dir != "/" {
			t.Errorf("%s: path %q chroot %q dir %q", tt.flavor, cmd.Path, cmd.SysProcAttr.Chroot, cmd.Dir)
		}
		if strings.Contains(strings.Join(cmd.Args, " "), "sekret") {
			t.Errorf("%s: password on the command line", tt.flavor)
		}
		if got := s.Redact("pw sekret!"); got != "pw <redacted>!" {
			t.Errorf("Redact = %q", got)
		}
	}
}

// needImage returns the cached image of a flavor, building it when
// LABRUN_BUILD_IMAGES=1, and skips the test otherwise.
func needImage(tb testing.TB, flavor string) *Image {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: chroot and network namespaces")
	}
	img, err := Find(flavor)
	if errors.Is(err, ErrNotBuilt) {
		if os.Getenv("LABRUN_BUILD_IMAGES") != "1" {
			tb.Skipf("flavor %s not built: run 'labrun images build %s' (or set LABRUN_BUILD_IMAGES=1)", flavor, flavor)
		}
		var log bytes.Buffer
		start := time.Now()
		img, err = Build(context.Background(), flavor, &log)
		if err != nil {
			tb.Fatalf("build %s: %v\n%s", flavor, err, tail(log.String(), 40))
		}
		tb.Logf("built %s %s in %s:\n%s", flavor, img.Version, time.Since(start).Round(time.Second), tail(log.String(), 4))
	}
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randomName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newNS creates a named namespace with lo up and testAddr on a veth pair
// (this kernel has no dummy links), deleted at the end of the test. It is
// created on a locked thread that is thrown away afterwards.
func newNS(tb testing.TB) netns.NsHandle {
	tb.Helper()
	name := randomName("lrtest-")
	type result struct {
		ns  netns.NsHandle
		err error
	}
	var r result
	r.ns, r.err = netem.NewNamed(name)
	if r.err == nil {
		r.err = netem.Do(r.ns, setupLinks)
	}
	if r.ns.IsOpen() {
		tb.Cleanup(func() {
			r.ns.Close()
			if err := netns.DeleteNamed(name); err != nil {
				tb.Errorf("delete namespace %s: %v", name, err)
			}
		})
	}
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.ns
}

// setupLinks runs inside the new namespace.
func setupLinks() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lr0"}, PeerName: "lr1"}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth (needs the veth module): %w", err)
	}
	addr, _ := netlink.ParseAddr(testAddr.String() + "/24")
	if err := netlink.AddrAdd(veth, addr); err != nil {
		return err
	}
	for _, n := range []string{"lr0", "lr1"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}

// newJournal creates a run journal under a temporary journal root.
func newJournal(tb testing.TB, runID string) *journal.Journal {
	tb.Helper()
	old := journal.Root
	journal.Root = tb.TempDir()
	tb.Cleanup(func() { journal.Root = old })
	j, err := journal.Create(runID)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { j.Close() })
	return j
}

func TestStartStop(t *testing.T) {
	for _, flavor := range Flavors() {
		t.Run(flavor, func(t *testing.T) {
			img := needImage(t, flavor)
			ns := newNS(t)
			runID := randomName("lrtest-")
			j := newJournal(t, runID)
			logDir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			s, err := Start(ctx, Config{RunID: runID, Flavor: flavor, NS: ns, Address: testAddr, Port: 3306,
				Variables: map[string]string{"max_connections": "42"}, Journal: j, LogDir: logDir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Stop() })
			t.Logf("%s: copied %.1f MiB in %s, ready %s after exec", s, float64(s.CopyBytes)/(1<<20),
				s.CopyTime.Round(time.Millisecond), s.StartToReady.Round(time.Millisecond))
			startTime := journal.ProcessStartTime(s.PID)
			// What a SIGKILLed run leaves for `labrun cleanup`, newest first.
			pending, err := journal.Pending(j.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != 2 || pending[0].Kind != journal.KindProcess || pending[0].PID != s.PID ||
				pending[0].StartTime != startTime || pending[1].Kind != journal.KindDir || pending[1].Path != s.RunDir {
				t.Errorf("journal lists %+v, want the process then %s", pending, s.RunDir)
			}

			if s.Version != img.Version {
				t.Errorf("version %q, image %q", s.Version, img.Version)
			}
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(cmdline, []byte(s.Password)) {
				t.Error("password in the server's command line")
			}
			if _, err := os.Stat(filepath.Join(s.RunDir, "init.sql")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("init.sql still there after readiness: %v", err)
			}
			if info, err := os.Stat(filepath.Join(s.RunDir, "client.cnf")); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("client.cnf: %v, %v", info, err)
			}

			db, err := s.OpenDB(ns)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var version, maxConn, cipher string
			if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@max_connections").Scan(&version, &maxConn); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(version, img.Version) || maxConn != "42" {
				t.Errorf("VERSION() %q, max_connections %q; want %s…, 42", version, maxConn, img.Version)
			}
			// An empty Ssl_cipher means this session is plain TCP.
			var name string
			if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
				t.Fatal(err)
			}
			if cipher != "" {
				t.Errorf("session uses TLS (%s)", cipher)
			}
			db.Close()

			checkCLI(t, s, ns)

			stopCleanly(t, s, j.Dir)
			if st := journal.ProcessStartTime(s.PID); st != 0 && st == startTime {
				t.Errorf("process %d still running", s.PID)
			}
		})
	}
}

// TestStartExits checks that a server that dies at once is reported with
// its log, and that nothing is left behind.
func TestStartExits(t *testing.T) {
	for _, flavor := range Flavors() {
		t.Run(flavor, func(t *testing.T) {
			needImage(t, flavor)
			ns := newNS(t)
			runID := randomName("lrtest-")
			j := newJournal(t, runID)
			img, _ := Find(flavor)
			_, err := Start(context.Background(), Config{RunID: runID, Flavor: flavor, NS: ns, Address: testAddr,
				Port: 3306, Variables: map[string]string{"no_such_option_xyz": "1"}, Journal: j})
			if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "no_such_option_xyz") {
				t.Fatalf("Start() error = %v, want ErrExited naming the bad option", err)
			}
			if _, err := os.Stat(filepath.Join(img.Root, runsDir, runID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("run directory left: %v", err)
			}
			if pending, _ := journal.Pending(j.Dir); len(pending) != 0 {
				t.Errorf("journal still lists %+v", pending)
			}
		})
	}
}

// TestDialContextIn checks that a dial happens in the given namespace: a
// listener on testAddr exists only there.
func TestDialContextIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	ns := newNS(t)
	var ln net.Listener
	if err := netem.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", testAddr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := DialContextIn(ns)(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// BenchmarkStartToReady reports, per flavor on the process engine, the time
// from exec to the first successful login, the time to copy the template
// data directory, and the time Stop takes (shutdown, log copy, removal of
// the run directory); BenchmarkContainerStartToReady is the same for the
// container engine. Between the two the server idles for holdBeforeStop.
func BenchmarkStartToReady(b *testing.B) {
	for _, flavor := range Flavors() {
		b.Run(flavor, func(b *testing.B) {
			needImage(b, flavor)
			ns := newNS(b)
			j := newJournal(b, randomName("lrbench-"))
			logDir := b.TempDir()
			var ready, cp, stop time.Duration
			var bytesCopied int64
			n := 0
			for b.Loop() {
				s, err := Start(context.Background(), Config{RunID: randomName("lrbench-"), Flavor: flavor,
					NS: ns, Address: testAddr, Port: 3306, Journal: j, LogDir: logDir})
				if err != nil {
					b.Fatal(err)
				}
				ready += s.StartToReady
				cp += s.CopyTime
				bytesCopied = s.CopyBytes
				b.StopTimer()
				holdBeforeStop()
				b.StartTimer()
				t0 := time.Now()
				if err := s.Stop(); err != nil {
					b.Fatal(err)
				}
				stop += time.Since(t0)
				n++
			}
			b.ReportMetric(float64(ready.Milliseconds())/float64(n), "ms-ready/op")
			b.ReportMetric(float64(cp.Milliseconds())/float64(n), "ms-copy/op")
			b.ReportMetric(float64(stop.Milliseconds())/float64(n), "ms-stop/op")
			b.ReportMetric(float64(bytesCopied)/(1<<20), "MiB-copied")
		})
	}
}

// holdBeforeStop idles for a random time of up to 1 s, as a scenario's
// timeline would. Oracle MySQL's shutdown waits for InnoDB's master thread,
// which sleeps 1 s at a time from about the moment the server is ready: a
// Stop right after Start would always wait most of that second, the worst
// case, where a scenario waits 0.5 s on average.
func holdBeforeStop() {
	time.Sleep(mathrand.N(time.Second))
}

// checkCLI runs the flavor's own client from namespace ns and requires it
// to compute 1+1 on the server: the chrooted CLI works whatever the engine.
func checkCLI(t *testing.T, s *Server, ns netns.NsHandle) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := s.ClientCommand("--batch", "--skip-column-names", "-e", "SELECT 1+1")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := netem.Start(ns, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v: %s", err, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != "2" {
		t.Errorf("client printed %q (stderr %q), want 2", got, errOut.String())
	}
}

// stopCleanly stops the server twice (Stop is idempotent) and requires its
// run directory and its journal entries gone (namespaces belong to the
// test), and its log copy kept without the password. Each engine checks on
// its own that the process or the container is gone.
func stopCleanly(t *testing.T, s *Server, journalDir string) {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(s.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run directory %s still there: %v", s.RunDir, err)
	}
	pending, err := journal.Pending(journalDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pending {
		if e.Kind != journal.KindNetns {
			t.Errorf("journal still lists %+v after Stop", e)
		}
	}
	log, err := os.ReadFile(s.LogCopy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("ready for connections")) || bytes.Contains(log, []byte(s.Password)) {
		t.Errorf("log copy: want 'ready for connections' and no password:\n%s", log)
	}
	// The log goes on to its last line: the server's own "Shutdown
	// complete" (MariaDB within the grace), or labrun's line saying the
	// shutdown was cut short (Oracle MySQL), never an unexplained end.
	shut := bytes.Contains(log, []byte("Shutdown complete"))
	cut := bytes.Contains(log, []byte("labrun: the server had not finished its shutdown"))
	if shut == cut || !bytes.HasSuffix(log, []byte("\n")) {
		t.Errorf("log copy: want exactly one of the server's 'Shutdown complete' and labrun's SIGKILL line:\n%s", log)
	}
}
