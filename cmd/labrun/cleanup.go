package main

import (
	"errors"
	"fmt"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/spf13/cobra"
)

func newCleanupCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed runs left: namespaces, server processes and containers, run directories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			runs, err := journal.List()
			if err != nil {
				return exitWith(exitInfra, err)
			}
			live := map[string]bool{}
			var errs []error
			removed := 0
			for _, r := range runs {
				if r.Alive && !all {
					live[r.ID] = true
					fmt.Fprintf(out, "run %s: still running (pid %d), left alone\n", r.ID, r.OwnerPID)
					continue
				}
				pending, _ := journal.Pending(r.Dir)
				left, err := journal.Clean(r.Dir)
				removed += len(pending) - len(left)
				fmt.Fprintf(out, "run %s: removed %d resources\n", r.ID, len(pending)-len(left))
				if err != nil {
					errs = append(errs, fmt.Errorf("run %s: %w", r.ID, err))
				}
			}
			// Namespaces with no journal (a run killed before it wrote one, or
			// a journal removed by hand) are labrun's by their prefix.
			names, err := netem.Namespaces()
			if err != nil {
				errs = append(errs, err)
			}
			for _, n := range names {
				if owned(n, live) {
					continue
				}
				if err := journal.Undo(journal.Entry{Kind: journal.KindNetns, Name: n}); err != nil {
					errs = append(errs, err)
					continue
				}
				removed++
				fmt.Fprintf(out, "namespace %s: removed\n", n)
			}
			// Containers (and any volume or network) labelled with a run
			// that is not live: a run killed before its journal said so.
			// An engine that is not there has nothing of labrun's running.
			objs, err := journal.LabelledObjects(cmd.Context())
			if err != nil && !errors.Is(err, journal.ErrNoDocker) {
				errs = append(errs, err)
			}
			for _, o := range objs {
				if live[o.RunID] {
					continue
				}
				if err := journal.RemoveObject(cmd.Context(), o); err != nil {
					errs = append(errs, err)
					continue
				}
				removed++
				fmt.Fprintf(out, "%s %s: removed\n", o.Kind, o.Name)
			}
			fmt.Fprintf(out, "cleanup: %d resources removed\n", removed)
			if err := errors.Join(errs...); err != nil {
				return exitWith(exitCleanup, err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also clean runs whose labrun process still runs")
	return cmd
}

// owned reports whether a namespace belongs to a live run: "lr-<run>-<host>".
func owned(ns string, live map[string]bool) bool {
	for id := range live {
		if len(ns) > len(id)+3 && ns[3:3+len(id)] == id {
			return true
		}
	}
	return false
}
