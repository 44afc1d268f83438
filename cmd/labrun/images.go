package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/labrun/labrun/server"
	"github.com/spf13/cobra"
)

func newImagesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "images", Short: "Build and list the server root filesystems"}
	build := &cobra.Command{
		Use:   "build FLAVOR...|all",
		Short: "Build (or reuse) the root filesystem of a server flavor with debootstrap",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "all" {
				args = server.Flavors()
			}
			for _, f := range args {
				img, err := server.Build(cmd.Context(), f, cmd.ErrOrStderr())
				if err != nil {
					if cmd.Context().Err() != nil {
						return exitWith(exitInterrupted, err)
					}
					return exitWith(exitInfra, fmt.Errorf("build %s: %w", f, err))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", img.Flavor, img.Version, img.Root)
			}
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the cached server root filesystems",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FLAVOR\tVERSION\tROOT")
			for _, f := range server.Flavors() {
				img, err := server.Find(f)
				if errors.Is(err, server.ErrNotBuilt) {
					fmt.Fprintf(tw, "%s\t-\tnot built: labrun images build %s\n", f, f)
					continue
				}
				if err != nil {
					return exitWith(exitInfra, err)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", img.Flavor, img.Version, img.Root)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(build, list)
	return cmd
}
