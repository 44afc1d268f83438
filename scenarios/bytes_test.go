package scenarios

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  string
	}{
		{"4096", 4096, ""},
		{"512KiB", 512 << 10, ""},
		{"8MiB", 8 << 20, ""},
		{"1.5GiB", 3 << 29, ""},
		{" 2 MiB ", 2 << 20, ""},
		{"1MB", 0, "want bytes, or a number with KiB, MiB or GiB"},
		{"-1", 0, "want bytes"},
		{"lots", 0, "want bytes"},
		{"2000000GiB", 0, "too large"},
	} {
		got, err := ParseBytes(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseBytes(%q) error %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestBytesString(t *testing.T) {
	for _, tt := range []struct {
		b    Bytes
		want string
	}{{0, "0"}, {4096, "4KiB"}, {1000, "1000"}, {1 << 30, "1GiB"}, {3 << 29, "1536MiB"}} {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("%d: %q, want %q", int64(tt.b), got, tt.want)
		}
		if tt.b == 0 {
			continue
		}
		if back, err := ParseBytes(tt.want); err != nil || Bytes(back) != tt.b {
			t.Errorf("%q reads back as %d, %v", tt.want, back, err)
		}
	}
}
