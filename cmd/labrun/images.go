package main

import (
	"errors"
	"fmt"
	"sync"
	"text/tabwriter"

	"github.com/labrun/labrun/server"
	"github.com/spf13/cobra"
)

func newImagesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "images", Short: "Build and list the server root filesystems (and their Docker images)"}
	var docker bool
	build := &cobra.Command{
		Use:   "build FLAVOR...|all",
		Short: "Build (or reuse) the root filesystem of a server flavor with debootstrap; --docker also imports it as a local image",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "all" {
				args = server.Flavors()
			}
			if docker {
				// Checked first, so that a missing engine does not cost a
				// debootstrap.
				if _, err := server.DockerStatus(cmd.Context()); err != nil {
					return exitWith(exitInfra, err)
				}
			}
			// Flavors build at once: each is mostly waiting on the package
			// archive and dpkg (or on the engine's import), and they share
			// nothing.
			imgs := make([]*server.Image, len(args))
			dimgs := make([]*server.DockerImage, len(args))
			errs := make([]error, len(args))
			var wg sync.WaitGroup
			for i, f := range args {
				wg.Add(1)
				go func() {
					defer wg.Done()
					imgs[i], errs[i] = server.Build(cmd.Context(), f, cmd.ErrOrStderr())
					if errs[i] == nil && docker {
						dimgs[i], errs[i] = server.BuildDocker(cmd.Context(), f, cmd.ErrOrStderr())
					}
				}()
			}
			wg.Wait()
			for i, f := range args {
				if errs[i] != nil {
					if cmd.Context().Err() != nil {
						return exitWith(exitInterrupted, errs[i])
					}
					return exitWith(exitInfra, fmt.Errorf("build %s: %w", f, errs[i]))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", imgs[i].Flavor, imgs[i].Version, imgs[i].Root)
				if dimgs[i] != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", imgs[i].Flavor, imgs[i].Version, dimgs[i].Ref)
				}
			}
			return nil
		},
	}
	build.Flags().BoolVar(&docker, "docker", false, "also import each root filesystem into Docker's engine as labrun/FLAVOR:VERSION, for --engine container")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the cached server root filesystems",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FLAVOR\tVERSION\tROOT\tDOCKER IMAGE")
			_, dockerErr := server.DockerStatus(cmd.Context())
			for _, f := range server.Flavors() {
				img, err := server.Find(f)
				if errors.Is(err, server.ErrNotBuilt) {
					fmt.Fprintf(tw, "%s\t-\tnot built: labrun images build %s\t-\n", f, f)
					continue
				}
				if err != nil {
					return exitWith(exitInfra, err)
				}
				dimg := "- (Docker's engine not reachable)"
				if dockerErr == nil {
					if d, err := server.FindDockerImage(cmd.Context(), f); err == nil {
						dimg = d.Ref
					} else {
						dimg = "not imported: labrun images build " + f + " --docker"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", img.Flavor, img.Version, img.Root, dimg)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(build, list)
	return cmd
}
