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

// timedReader hands pace its input a few bytes at a time and records when
// each read happened.
type timedReader struct {
	r     io.Reader
	reads []time.Time
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p[:min(len(p), 2)]) // one "x\n" line per read
	t.reads = append(t.reads, time.Now())
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
			start := time.Now()
			if err := pace(context.Background(), r, strings.NewReader(tt.input), tt.stream, &keep); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if r.ConnID != tt.id {
				t.Errorf("connection id %d, want %d", r.ConnID, tt.id)
			}
			want := time.Duration(tt.pauses) * tt.stream.Pause
			if took < want || took > want+time.Second {
				t.Errorf("took %v, want %d pauses of %v", took, tt.pauses, tt.stream.Pause)
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
	r := &Result{}
	var keep bytes.Buffer
	if err := pace(context.Background(), r, in, Stream{Pause: 100 * time.Millisecond, Rows: 1}, &keep); err != nil {
		t.Fatal(err)
	}
	// The id and a, then a pause before b is read, and again before c.
	gaps := 0
	for i := 1; i < len(in.reads); i++ {
		if in.reads[i].Sub(in.reads[i-1]) >= 90*time.Millisecond {
			gaps++
		}
	}
	if gaps < 2 {
		t.Errorf("%d pauses between reads, want at least 2 (reads at %v)", gaps, in.reads)
	}
}

// Cancelling the context ends a pause at once.
func TestPaceCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	err := pace(ctx, &Result{}, strings.NewReader("1\na\nb\n"), Stream{Pause: time.Hour, Rows: 1}, &bytes.Buffer{})
	if err != context.Canceled || time.Since(start) > 5*time.Second {
		t.Errorf("pace returned %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}
