// Command labrun turns YAML lab scenarios into reproducible experiments on
// the Linux kernel: MySQL servers and clients in network namespaces, faults
// on a timeline, packets recorded, and the outcome checked against numbers.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, a contract other tools rely on.
const (
	exitOK          = 0
	exitFailed      = 1 // a check failed
	exitInterrupted = 2 // interrupted, after cleanup
	exitInfra       = 3 // setup or infrastructure error
	exitUsage       = 4 // invalid scenario or usage; nothing was touched
	exitNoMatch     = 5 // no scenario matched
	exitCleanup     = 6 // cleanup incomplete
)

// exitError carries an exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "labrun: %s: stopping and cleaning up (again to force exit)\n", s)
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "labrun: forced exit; run 'labrun cleanup' to remove what is left")
		os.Exit(exitInterrupted)
	}()

	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	cancel()
	if err == nil {
		os.Exit(exitOK)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "labrun:", ee.err)
		}
		os.Exit(ee.code)
	}
	// Cobra's own errors are about flags and arguments.
	fmt.Fprintln(os.Stderr, "labrun:", err)
	os.Exit(exitUsage)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "labrun",
		Short:         "Run MySQL and TCP lab scenarios in network namespaces and check the outcome",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newPlanCmd(), newCleanupCmd(), newDoctorCmd(), newImagesCmd(), newValidateCmd(), newSchemaCmd())
	return root
}
