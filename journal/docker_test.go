package journal_test

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/labrun/labrun/journal"
)

// fakeEngine serves the Docker Engine API paths the journal uses on a unix
// socket named by DOCKER_HOST, answering from a table of statuses per
// method and path; each answer is used once, the last one repeatedly.
type fakeEngine struct {
	mu      sync.Mutex
	answers map[string][]int
	calls   []string
}

func startFakeEngine(t *testing.T, answers map[string][]int) *fakeEngine {
	t.Helper()
	f := &fakeEngine{answers: answers}
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.calls = append(f.calls, key+"?"+r.URL.RawQuery)
		list := f.answers[key]
		status := http.StatusNotFound
		if len(list) > 0 {
			status = list[0]
			if len(list) > 1 {
				f.answers[key] = list[1:]
			}
		}
		f.mu.Unlock()
		w.WriteHeader(status)
		if status >= 400 {
			w.Write([]byte(`{"message":"fake engine says ` + http.StatusText(status) + `"}`))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	return f
}

func TestUndoContainer(t *testing.T) {
	const name = "lr-0a1b2c3d-server"
	path := "DELETE /containers/" + name
	tests := []struct {
		name    string
		answers []int
		wantErr string
	}{
		{"removed", []int{http.StatusNoContent}, ""},
		{"already gone", []int{http.StatusNotFound}, ""},
		// The engine refuses while an earlier removal is in progress.
		{"removal in progress", []int{http.StatusConflict, http.StatusConflict, http.StatusNoContent}, ""},
		{"engine error", []int{http.StatusInternalServerError}, "fake engine says Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeEngine(t, map[string][]int{path: tt.answers})
			err := journal.Undo(journal.Entry{Kind: journal.KindContainer, Name: name})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Undo: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Undo = %v, want an error with %q", err, tt.wantErr)
			}
			// force kills a running container; v removes its anonymous
			// volumes (an official image declares one for its datadir).
			if len(f.calls) == 0 || !strings.Contains(f.calls[0], "force=1") || !strings.Contains(f.calls[0], "v=1") {
				t.Errorf("calls %v, want a DELETE with force=1 and v=1", f.calls)
			}
		})
	}
}

func TestUndoContainerWithoutEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no.sock"))
	err := journal.Undo(journal.Entry{Kind: journal.KindContainer, Name: "lr-x-server"})
	if !errors.Is(err, journal.ErrNoDocker) {
		t.Fatalf("Undo = %v, want ErrNoDocker", err)
	}
}

func TestContainerExists(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   bool
	}{
		{"present", http.StatusOK, true},
		{"gone", http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			startFakeEngine(t, map[string][]int{"GET /containers/lr-x-server/json": {tt.status}})
			if got := journal.Exists(journal.Entry{Kind: journal.KindContainer, Name: "lr-x-server"}); got != tt.want {
				t.Errorf("Exists = %v, want %v", got, tt.want)
			}
		})
	}
}
