// Package netem builds a run's network: one network namespace per host, the
// links between them, per-namespace sysctls and iptables rules. Nothing it
// does touches the host namespace.
package netem

import (
	"fmt"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a fresh OS thread that has joined the namespace ns. The
// thread stays locked and is thrown away when fn returns, so a thread whose
// namespace was changed never goes back into Go's pool.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime terminates a locked thread when its
		// goroutine exits.
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Start starts cmd inside the namespace ns. The child inherits the namespace
// of the thread that forks it, so the fork happens inside Do.
func Start(ns netns.NsHandle, cmd *exec.Cmd) error {
	return Do(ns, cmd.Start)
}
