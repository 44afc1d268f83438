package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/spf13/cobra"
)

func newPlanCmd() *cobra.Command {
	var asJSON bool
	var setFlags []string
	cmd := &cobra.Command{
		Use:   "plan PATH...",
		Short: "Show what the kernel model predicts for each check, without running anything",
		Long: "plan computes each check's expectation from the scenario's sysctls laid over the kernel's\n" +
			"defaults: the way to see a scenario too long to run, such as the article's two-hour keepalive.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := collect(args)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			sets, err := parseSets(setFlags)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			var bad []string
			out := cmd.OutOrStdout()
			all := map[string][]checks.PlannedCheck{}
			var insts []*scenarios.Scenario
			for _, p := range files {
				sc, err := scenarios.Load(p)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				// A matrix is planned cell by cell.
				in, err := expand(sc, sets, nil, nil)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				insts = append(insts, in...)
			}
			for _, sc := range insts {
				p := sc.File
				plan := checks.Plan(sc)
				all[sc.Name] = plan
				if asJSON {
					continue
				}
				fmt.Fprintf(out, "%s (%s)\n", sc.Name, p)
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "  check\tdocumented\tmodel")
				for _, c := range plan {
					var doc any
					if c.Documented != nil {
						doc = c.Documented.Value
					}
					fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Name, reports.Render(doc), reports.Render(c.Expected))
				}
				tw.Flush()
				for _, c := range plan {
					if c.Expected != nil {
						fmt.Fprintf(out, "  %s: %s\n", c.Name, c.Explain)
					}
				}
				fmt.Fprintln(out)
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(all); err != nil {
					return exitWith(exitInfra, err)
				}
			}
			if len(bad) > 0 {
				return exitWith(exitUsage, errors.New(strings.Join(bad, "\n")))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	cmd.Flags().StringArrayVar(&setFlags, "set", nil, "sweep a value as labrun run --set does: PATH=V1,V2,...")
	return cmd
}
