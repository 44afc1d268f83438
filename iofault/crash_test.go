package iofault_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
)

// The crash helper is this test binary run again: it makes a disk, freezes
// it, starts a load (blocked at once by the freeze) and a sleep, throttles
// both, says READY and waits to be killed.
const crashEnv = "IOFAULT_TEST_CRASH"

func TestCrashHelper(t *testing.T) {
	_, d := crashChildDisk(t, crashEnv, "TestCrashCleanup", iofault.DiskSpec{Size: testSize})
	if _, err := d.Freeze(); err != nil {
		t.Fatal(err)
	}
	l, err := d.StartLoad(iofault.LoadSpec{Bytes: 1 << 30, For: 10 * time.Minute, Block: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "120")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Throttle([]int{sleep.Process.Pid, l.PID()}, iofault.Limits{WriteBPS: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %d %d %s\n", sleep.Process.Pid, l.PID(), d.Backing)
	select {}
}

// A run killed with SIGKILL while its disk is frozen, throttled and loaded:
// journal.Clean thaws first, then kills the load, moves the throttled
// processes out and removes the group, unmounts, unbinds and deletes.
func TestCrashCleanup(t *testing.T) {
	needFreeze(t)
	needBlkio(t)
	tempRoot(t)
	cmd, jdir, dir, f := startCrashChild(t, "TestCrashHelper", crashEnv)
	sleepPID, _ := strconv.Atoi(f[0])
	loadPID, _ := strconv.Atoi(f[1])
	backing := f[2]
	t.Cleanup(func() {
		if p, err := os.FindProcess(sleepPID); err == nil {
			p.Kill()
		}
	})
	waitState(t, loadPID, 'D')

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	pend, err := journal.Pending(jdir)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range pend {
		kinds = append(kinds, e.Kind)
	}
	t.Logf("pending after SIGKILL, newest first: %v", kinds)
	group := filepath.Join(journal.BlkioRoot, journal.CgroupPrefix+filepath.Base(jdir)+"-data")
	if _, err := os.Stat(group); err != nil {
		t.Fatalf("the throttle group is not there before Clean: %v", err)
	}

	left, err := journal.Clean(jdir)
	if err != nil || len(left) != 0 {
		t.Fatalf("Clean = %+v, %v; want nothing left", left, err)
	}
	assertGone(t, dir, backing)
	if _, err := os.Stat(group); !os.IsNotExist(err) {
		t.Errorf("group %s still there: %v", group, err)
	}
	if got := blkioGroupOf(t, sleepPID); got != "/" {
		t.Errorf("throttled sleep in %s after Clean, want the root", got)
	}
	if s := procState(loadPID); s != 0 && s != 'Z' {
		t.Errorf("load writer %d still running after Clean (state %q)", loadPID, s)
	}
	if _, err := os.Stat(jdir); !os.IsNotExist(err) {
		t.Errorf("journal %s still there: %v", jdir, err)
	}
}
