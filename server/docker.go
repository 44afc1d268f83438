package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/labrun/labrun/journal"
)

// Images for the container engine. Without a registry, an image is the
// flavor's root filesystem imported as is (`labrun images build FLAVOR
// --docker`): the same binaries as the process engine, so the two engines
// differ only in how the server is isolated. With a registry, a scenario
// can name an official image instead (mysql:8.4, mariadb:11.4).

// Sentinel errors of the container engine.
var (
	ErrNoDocker      = errors.New("needs Docker's engine")
	ErrNoImage       = errors.New("container image not found")
	ErrUnknownEngine = errors.New("unknown engine")
)

// Engines are the ways a server can run.
const (
	// EngineProcess is mysqld chrooted into the root filesystem, in the
	// server host's namespace.
	EngineProcess = "process"
	// EngineContainer is mysqld in a Docker container started with no
	// network of Docker's; labrun plugs its lab link into the container's
	// namespace.
	EngineContainer = "container"
)

// Engines lists the engines, sorted.
func Engines() []string { return []string{EngineContainer, EngineProcess} }

// Labels on labrun's images and containers.
const (
	labelFlavor  = "labrun.flavor"
	labelVersion = "labrun.version"
	// labelBuilt ties an imported image to the root filesystem build it
	// came from, so that a rebuilt root filesystem is imported again.
	labelBuilt = "labrun.built"
	labelHost  = "labrun.host"
)

// LocalImage is the name of the image imported from a flavor's root
// filesystem: labrun/mysql:9.7.4.
func LocalImage(flavor, version string) string { return "labrun/" + flavor + ":" + version }

// FlavorOfImage guesses the flavor of an image reference from its
// repository name ("mysql:8.4", "docker.io/library/mariadb:11.4",
// "labrun/mariadb:10.11.18"); "" when it cannot tell.
func FlavorOfImage(ref string) string {
	name := ref
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.Index(name, ":"); i >= 0 {
		name = name[:i]
	}
	switch {
	case strings.Contains(name, "mariadb"):
		return "mariadb"
	case strings.Contains(name, "mysql"):
		return "mysql"
	}
	return ""
}

// DockerStatus reports whether Docker's engine answers on its socket, with
// its version, or why not in words that say what to do.
func DockerStatus(ctx context.Context) (string, error) {
	v, err := journal.DockerPing(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %s not reachable (install docker.io and start dockerd): %w", ErrNoDocker, journal.DockerSocket(), err)
	}
	return v, nil
}

// ryukOnce disables testcontainers' reaper before the library first reads
// its configuration: the reaper's image comes from a registry, and labrun's
// journal and `labrun cleanup` already remove what a killed run leaves. It
// also silences the library's progress lines: labrun reports what matters
// in its own errors and report.
var ryukOnce sync.Once

// newProvider returns a testcontainers Docker provider that treats Docker's
// "none" network as its default: otherwise the library attaches every
// container to a bridge network, and creates one when the engine runs with
// --bridge=none, which would add a link and addresses to the host
// namespace.
func newProvider(ctx context.Context) (*testcontainers.DockerProvider, error) {
	ryukOnce.Do(func() {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
		// The library's first client prints a banner through its global
		// logger whatever the provider's logger is.
		tclog.SetDefault(tclog.NewNoopLogger())
	})
	if _, err := DockerStatus(ctx); err != nil {
		return nil, err
	}
	p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()),
		testcontainers.WithDefaultBridgeNetwork("none"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	return p, nil
}

// DockerImage describes an image the container engine can run.
type DockerImage struct {
	Ref        string
	ID         string
	Flavor     string
	Version    string // from the labrun labels; empty for other images
	Built      string
	Entrypoint []string
	Cmd        []string
	// Local is true for an image imported from a labrun root filesystem:
	// no entrypoint of its own, the daemon at the same path as in the
	// chroot.
	Local bool
}

// inspectImage returns the image, or an error wrapping ErrNoImage.
func inspectImage(ctx context.Context, api client.APIClient, ref string) (*DockerImage, error) {
	res, err := api.ImageInspect(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrNoImage, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	img := &DockerImage{Ref: ref, ID: res.ID}
	if c := res.Config; c != nil {
		img.Entrypoint, img.Cmd = c.Entrypoint, c.Cmd
		img.Flavor, img.Version, img.Built = c.Labels[labelFlavor], c.Labels[labelVersion], c.Labels[labelBuilt]
	}
	img.Local = img.Flavor != "" && img.Version != ""
	return img, nil
}

// FindDockerImage returns the local image of a flavor's root filesystem,
// or an error that says how to build it.
func FindDockerImage(ctx context.Context, flavor string) (*DockerImage, error) {
	root, err := Find(flavor)
	if err != nil {
		return nil, err
	}
	p, err := newProvider(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	ref := LocalImage(flavor, root.Version)
	img, err := inspectImage(ctx, p.Client(), ref)
	if errors.Is(err, ErrNoImage) {
		return nil, fmt.Errorf("%w: run 'labrun images build %s --docker'", err, flavor)
	}
	return img, err
}

// BuildDocker imports a flavor's root filesystem as the local image
// labrun/FLAVOR:VERSION, building the root filesystem first if needed. An
// image imported from the same build is kept. Progress goes to log.
func BuildDocker(ctx context.Context, flavor string, log io.Writer) (*DockerImage, error) {
	if log == nil {
		log = io.Discard
	}
	root, err := Build(ctx, flavor, log)
	if err != nil {
		return nil, err
	}
	p, err := newProvider(ctx)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", flavor, err)
	}
	defer p.Close()
	ref := LocalImage(flavor, root.Version)
	built := root.Built.UTC().Format(time.RFC3339Nano)
	img, err := inspectImage(ctx, p.Client(), ref)
	if err == nil && img.Built == built {
		return img, nil
	}
	if err != nil && !errors.Is(err, ErrNoImage) {
		return nil, fmt.Errorf("import %s: %w", flavor, err)
	}
	// The image of an earlier build loses its tag to the new one; it is
	// removed afterwards unless a container still uses it.
	var stale string
	if err == nil {
		stale = img.ID
	}

	t0 := time.Now()
	fmt.Fprintf(log, "docker import %s as %s\n", root.Root, ref)
	// GNU tar streams the tree with numeric owners. Left out: the run
	// directories of live process-engine runs, and the template data
	// directory (about 100 MiB for mysql), which a container gets through
	// its per-run bind mount like a process gets its copy.
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--one-file-system",
		"--exclude=."+runsDir+"/*", "--exclude=."+templateDir,
		"-C", root.Root, "-cf", "-", ".")
	var tarErr strings.Builder
	tarCmd.Stderr = &tarErr
	stream, err := tarCmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", flavor, err)
	}
	if err := tarCmd.Start(); err != nil {
		return nil, fmt.Errorf("import %s: tar: %w", flavor, err)
	}
	res, err := p.Client().ImageImport(ctx, client.ImageImportSource{Source: stream, SourceName: "-"}, ref,
		client.ImageImportOptions{
			Message: "labrun: " + flavor + " " + root.Version + " root filesystem (" + root.Suite + ")",
			Changes: []string{
				"LABEL " + labelFlavor + "=" + flavor,
				"LABEL " + labelVersion + "=" + root.Version,
				"LABEL " + labelBuilt + "=" + built,
				// The same environment as the chroot's.
				"ENV " + strings.Join(chrootEnv, " "),
				"WORKDIR /",
			},
		})
	if err == nil {
		err = importResult(res)
	}
	// tar is done or stuck on a closed pipe: either way it ends now.
	if err != nil {
		tarCmd.Process.Kill()
	}
	if werr := tarCmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("tar: %w: %s", werr, strings.TrimSpace(tarErr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", flavor, err)
	}
	fmt.Fprintf(log, "imported %s in %s\n", ref, time.Since(t0).Round(100*time.Millisecond))
	if stale != "" {
		p.Client().ImageRemove(ctx, stale, client.ImageRemoveOptions{})
	}
	return inspectImage(ctx, p.Client(), ref)
}

// importResult reads the engine's JSON progress stream and returns the
// error it reports, if any.
func importResult(r io.ReadCloser) error {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && (m.Error != "" || m.ErrorDetail.Message != "") {
			if m.Error != "" {
				return errors.New(m.Error)
			}
			return errors.New(m.ErrorDetail.Message)
		}
	}
	return sc.Err()
}

// ensureImage returns the image, pulling it first if it is absent: the
// container's command line depends on the image's entrypoint.
func ensureImage(ctx context.Context, p *testcontainers.DockerProvider, ref string) (*DockerImage, error) {
	img, err := inspectImage(ctx, p.Client(), ref)
	if !errors.Is(err, ErrNoImage) {
		return img, err
	}
	if FlavorOfImage(ref) != "" && strings.HasPrefix(ref, "labrun/") {
		return nil, fmt.Errorf("%w: run 'labrun images build %s --docker'", err, FlavorOfImage(ref))
	}
	if perr := p.PullImage(ctx, ref); perr != nil {
		return nil, fmt.Errorf("%w (and pulling it failed: %w)", err, perr)
	}
	return inspectImage(ctx, p.Client(), ref)
}
