package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/labrun/labrun/scenarios"
	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check scenario files without running them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := collect(args)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			if len(files) == 0 {
				return exitWith(exitNoMatch, fmt.Errorf("no scenario files in %s", strings.Join(args, " ")))
			}
			var bad []string
			for _, p := range files {
				sc, err := scenarios.Load(p)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				// Every cell of a matrix must load too.
				insts, err := scenarios.Expand(sc, nil, nil)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				if sc.Matrix != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d cells)\n", p, len(insts))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", p)
			}
			if len(bad) > 0 {
				return exitWith(exitUsage, errors.New(strings.Join(bad, "\n")))
			}
			return nil
		},
	}
}

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON schema of scenario files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := scenarios.Schema()
			if err != nil {
				return exitWith(exitInfra, err)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}
