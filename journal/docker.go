package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The few Docker Engine API calls that cleanup needs, over the engine's
// unix socket with net/http: the journal must be able to remove a container
// without the container engine's client library, and from `labrun cleanup`
// long after the run that created it died.

// ErrNoDocker means Docker's engine did not answer on its socket.
var ErrNoDocker = errors.New("docker engine not reachable")

// RunLabel is the container, volume and network label that carries the run
// ID, so that leftovers of a run without a journal can still be found.
const RunLabel = "labrun.run"

// dockerTimeout bounds one API call; a removal with force waits for the
// container's processes to die, which takes well under this.
const dockerTimeout = 30 * time.Second

// DockerSocket is the engine's socket: the path in DOCKER_HOST when it is a
// unix:// address, else /var/run/docker.sock.
func DockerSocket() string {
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		return strings.TrimPrefix(h, "unix://")
	}
	return "/var/run/docker.sock"
}

// dockerCall makes one API call and returns the status and body. A
// connection that fails is ErrNoDocker.
func dockerCall(ctx context.Context, method, path string, query url.Values) (int, []byte, error) {
	sock := DockerSocket()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	u := "http://docker" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return 0, nil, fmt.Errorf("%w: %s: %w", ErrNoDocker, sock, err)
		}
		return 0, nil, fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	return resp.StatusCode, body, nil
}

// dockerMessage is the engine's error text in a response body.
func dockerMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(body))
}

// DockerPing reports whether Docker's engine answers, and its version.
func DockerPing(ctx context.Context) (string, error) {
	status, body, err := dockerCall(ctx, http.MethodGet, "/version", nil)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("%w: /version: %d %s", ErrNoDocker, status, dockerMessage(body))
	}
	var v struct {
		Version    string `json:"Version"`
		APIVersion string `json:"ApiVersion"`
	}
	json.Unmarshal(body, &v)
	return v.Version + " (API " + v.APIVersion + ")", nil
}

// removeContainer removes a container and its anonymous volumes, killing
// it first if it runs. A container already gone counts as removed.
func removeContainer(name string) error {
	if !validContainerName(name) {
		return fmt.Errorf("refusing to remove container %q", name)
	}
	ctx := context.Background()
	deadline := time.Now().Add(dockerTimeout)
	for {
		status, body, err := dockerCall(ctx, http.MethodDelete, "/containers/"+url.PathEscape(name),
			url.Values{"force": {"1"}, "v": {"1"}})
		if err != nil {
			return fmt.Errorf("remove container %s: %w", name, err)
		}
		switch {
		case status == http.StatusNoContent || status == http.StatusNotFound:
			return nil
		case status == http.StatusConflict && time.Now().Before(deadline):
			// "removal already in progress": the run's own teardown, or
			// the engine finishing an earlier request.
			time.Sleep(200 * time.Millisecond)
		default:
			return fmt.Errorf("remove container %s: %d %s", name, status, dockerMessage(body))
		}
	}
}

// containerExists reports whether the engine knows the container. An
// engine that does not answer cannot say: the container may still be on
// disk, so it is reported as present.
func containerExists(name string) bool {
	status, _, err := dockerCall(context.Background(), http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", nil)
	if err != nil {
		return errors.Is(err, ErrNoDocker) && socketExists()
	}
	return status == http.StatusOK
}

func socketExists() bool {
	_, err := os.Stat(DockerSocket())
	return err == nil
}

// validContainerName keeps Undo to names a run can have made.
func validContainerName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// DockerObject is a container, volume or network that carries RunLabel.
type DockerObject struct {
	Kind  string // "container", "volume" or "network"
	Name  string
	RunID string
	State string // containers only: running, exited, ...
}

// LabelledObjects lists the containers, volumes and networks that carry
// RunLabel, whatever their run. A missing engine returns ErrNoDocker.
func LabelledObjects(ctx context.Context) ([]DockerObject, error) {
	filter, _ := json.Marshal(map[string][]string{"label": {RunLabel}})
	q := url.Values{"filters": {string(filter)}}
	var out []DockerObject

	q.Set("all", "1")
	status, body, err := dockerCall(ctx, http.MethodGet, "/containers/json", q)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("list containers: %d %s", status, dockerMessage(body))
	}
	var cs []struct {
		Names  []string          `json:"Names"`
		Labels map[string]string `json:"Labels"`
		State  string            `json:"State"`
	}
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, DockerObject{Kind: "container", Name: name, RunID: c.Labels[RunLabel], State: c.State})
	}
	q.Del("all")

	status, body, err = dockerCall(ctx, http.MethodGet, "/volumes", q)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("list volumes: %d %s", status, dockerMessage(body))
	}
	var vs struct {
		Volumes []struct {
			Name   string            `json:"Name"`
			Labels map[string]string `json:"Labels"`
		} `json:"Volumes"`
	}
	if err := json.Unmarshal(body, &vs); err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	for _, v := range vs.Volumes {
		out = append(out, DockerObject{Kind: "volume", Name: v.Name, RunID: v.Labels[RunLabel]})
	}

	status, body, err = dockerCall(ctx, http.MethodGet, "/networks", q)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("list networks: %d %s", status, dockerMessage(body))
	}
	var ns []struct {
		Name   string            `json:"Name"`
		Labels map[string]string `json:"Labels"`
	}
	if err := json.Unmarshal(body, &ns); err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns {
		out = append(out, DockerObject{Kind: "network", Name: n.Name, RunID: n.Labels[RunLabel]})
	}
	return out, nil
}

// RemoveObject removes a labelled container (with force), volume or
// network; one already gone counts as removed.
func RemoveObject(ctx context.Context, o DockerObject) error {
	var path string
	q := url.Values{}
	switch o.Kind {
	case "container":
		return removeContainer(o.Name)
	case "volume":
		path = "/volumes/" + url.PathEscape(o.Name)
		q.Set("force", "1")
	case "network":
		path = "/networks/" + url.PathEscape(o.Name)
	default:
		return fmt.Errorf("unknown docker object kind %q", o.Kind)
	}
	status, body, err := dockerCall(ctx, http.MethodDelete, path, q)
	if err != nil {
		return fmt.Errorf("remove %s %s: %w", o.Kind, o.Name, err)
	}
	if status != http.StatusNoContent && status != http.StatusNotFound && status != http.StatusOK {
		return fmt.Errorf("remove %s %s: %d %s", o.Kind, o.Name, status, dockerMessage(body))
	}
	return nil
}
