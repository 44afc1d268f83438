package netem_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
)

// The crash helper is this test binary run again: it brings up the routed
// lab with SNAT on the router, closes a few connections through it (so
// that the router's conntrack table holds TIME_WAIT entries), says READY
// and waits to be killed.
const routedCrashEnv = "NETEM_TEST_ROUTED_CRASH"

func TestRoutedCrashHelper(t *testing.T) {
	spec := os.Getenv(routedCrashEnv)
	if spec == "" {
		t.Skip("the crash test's child, run by TestRoutedCrashCleanup")
	}
	root, runID, _ := strings.Cut(spec, "|")
	journal.Root = root
	j, err := journal.Create(runID)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := netem.Up(routedSpec(runID), j)
	if err != nil {
		t.Fatal(err)
	}
	applyRule(t, topo.Hosts["nat"], snatRule, "snat")
	applyRule(t, topo.Hosts["nat"], stripSYNRule, "strip")
	ln := listen(t, topo.Hosts["server"], 3306)
	answerOnce(t, ln)
	for i := range 3 {
		if _, _, err := shortConn(topo.Hosts["client"], netip.Addr{}, ln.Addr().(*net.TCPAddr).AddrPort()); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	es, err := topo.Hosts["nat"].Conntrack()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %d\n", len(es))
	select {}
}

// A run killed with SIGKILL with its routed lab up: journal.Clean removes
// every namespace, the router's included, and the host's conntrack table
// never held anything of the lab.
func TestRoutedCrashCleanup(t *testing.T) {
	needRoot(t)
	needIptables(t)
	oldRoot := journal.Root
	journal.Root = filepath.Join(t.TempDir(), "runs")
	t.Cleanup(func() { journal.Root = oldRoot })
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := "t" + hex.EncodeToString(b)
	jdir := filepath.Join(journal.Root, id)
	// Whatever happens below, nothing stays on the machine.
	t.Cleanup(func() {
		if _, err := os.Stat(jdir); err == nil {
			if left, err := journal.Clean(jdir); err != nil {
				t.Errorf("final Clean: %+v, %v", left, err)
			}
		}
	})

	cmd := exec.Command(os.Args[0], "-test.run=^TestRoutedCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), routedCrashEnv+"="+journal.Root+"|"+id)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "READY" {
				ready <- f[1]
				return
			}
			t.Logf("child: %s", sc.Text())
		}
		close(ready)
	}()
	var entries string
	select {
	case entries = <-ready:
	case <-time.After(time.Minute):
	}
	if entries == "" {
		t.Fatalf("the child never got ready: %s", stderr.String())
	}
	t.Logf("the child's router held %s conntrack entries", entries)
	want := []string{}
	for _, h := range []string{"client", "hub", "nat", "server"} {
		want = append(want, netem.NSName(id, h))
	}
	if got := runNamespaces(t, id); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("namespaces before the kill = %v, want %v", got, want)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// Killed, the run's namespaces are still there: their names hold them.
	if got := runNamespaces(t, id); len(got) != len(want) {
		t.Fatalf("namespaces after the kill = %v, want %v", got, want)
	}

	left, err := journal.Clean(jdir)
	if err != nil || len(left) != 0 {
		t.Fatalf("Clean = %+v, %v; want nothing left", left, err)
	}
	if got := runNamespaces(t, id); len(got) != 0 {
		t.Errorf("namespaces after Clean: %v", got)
	}
	if es := hostLabConntrack(t); len(es) != 0 {
		t.Errorf("host conntrack has lab entries after Clean: %v", es)
	}
	if _, err := os.Stat(jdir); !os.IsNotExist(err) {
		t.Errorf("journal %s still there: %v", jdir, err)
	}
}
