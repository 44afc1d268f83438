package client

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timedReader hands pace its input one short line per read and logs each
// read, so that a test sees the order of reads and pauses.
type timedReader struct {
	r   io.Reader
	log []string // "read" and "pause", in order
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p[:min(len(p), 2)]) // one "x\n" line per read
	t.log = append(t.log, "read")
	return n, err
}

func TestPace(t *testing.T) {
	tests := []struct {
		name   string
		input  string
		stream Stream
		rows   int
		id     int64
		pauses int
	}{
		{"id then rows, pause after every 2", "42\nr1\nr2\nr3\nr4\nr5\n", Stream{Pause: 30 * time.Millisecond, Rows: 2}, 5, 42, 2},
		{"rows 0 means 1", "7\na\nb\n", Stream{Pause: 30 * time.Millisecond}, 2, 7, 2},
		{"a last row without a newline is not counted", "9\na\nb", Stream{Pause: 30 * time.Millisecond, Rows: 5}, 1, 9, 0},
		{"no id: the first line is not a number", "ERROR\nx\n", Stream{Pause: 30 * time.Millisecond, Rows: 5}, 1, 0, 0},
		{"a row longer than the buffer counts once", "3\n" + strings.Repeat("y", 10000) + "\nz\n", Stream{Pause: 30 * time.Millisecond, Rows: 1}, 2, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{}
			var keep bytes.Buffer
			var pauses []time.Duration
			fakePause(t, func(d time.Duration) { pauses = append(pauses, d) })
			if err := pace(context.Background(), r, strings.NewReader(tt.input), tt.stream, &keep); err != nil {
				t.Fatal(err)
			}
			if r.ConnID != tt.id {
				t.Errorf("connection id %d, want %d", r.ConnID, tt.id)
			}
			if len(pauses) != tt.pauses {
				t.Errorf("%d pauses %v, want %d of %v", len(pauses), pauses, tt.pauses, tt.stream.Pause)
			}
			for _, d := range pauses {
				if d != tt.stream.Pause {
					t.Errorf("paused %v, want %v", d, tt.stream.Pause)
				}
			}
			last := r.Events[len(r.Events)-1].What
			if wantEv := "streaming: read " + strconv.Itoa(tt.rows) + " rows"; last != wantEv {
				t.Errorf("last event %q, want %q", last, wantEv)
			}
			if keep.Len() > keepOutput || !strings.HasPrefix(tt.input, keep.String()) {
				t.Errorf("kept %d bytes %.40q, want a prefix of the input, at most %d", keep.Len(), keep.String(), keepOutput)
			}
		})
	}
}

// A reader that pauses takes nothing from the pipe meanwhile: that is what
// fills the client's pipe, then its socket, then the server's.
func TestPaceStopsReadingWhilePaused(t *testing.T) {
	in := &timedReader{r: strings.NewReader("1\na\nb\nc\n")}
	fakePause(t, func(time.Duration) { in.log = append(in.log, "pause") })
	r := &Result{}
	var keep bytes.Buffer
	if err := pace(context.Background(), r, in, Stream{Pause: 100 * time.Millisecond, Rows: 1}, &keep); err != nil {
		t.Fatal(err)
	}
	// The id and a, then a pause before b is read, and again before c: a
	// pause always comes between two reads, never during one.
	got := strings.Join(in.log, " ")
	want := "read read pause read pause read pause read"
	if !strings.HasPrefix(got, want) {
		t.Errorf("reads and pauses: %s\nwant them to start %s", got, want)
	}
}

// fakePause replaces the streaming pause for one test with a recorder that
// returns at once: pauses are counted, not timed.
func fakePause(t *testing.T, record func(time.Duration)) {
	old := pause
	pause = func(_ context.Context, d time.Duration) error {
		record(d)
		return nil
	}
	t.Cleanup(func() { pause = old })
}

// Cancelling the context ends a pause at once.
func TestPaceCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	// An hour-long pause that ignored ctx would hit go test's timeout.
	err := pace(ctx, &Result{}, strings.NewReader("1\na\nb\n"), Stream{Pause: time.Hour, Rows: 1}, &bytes.Buffer{})
	if err != context.Canceled {
		t.Errorf("pace returned %v, want context.Canceled", err)
	}
}
