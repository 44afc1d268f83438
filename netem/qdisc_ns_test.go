package netem_test

import (
	"errors"
	"testing"
	"time"

	"github.com/labrun/labrun/netem"
)

// TestImpairInNamespace applies and removes netem on a host where the kernel
// has it; here it proves the clear error where it does not.
func TestImpairInNamespace(t *testing.T) {
	l := up(t, "client", "server")
	h := l.host(t, "client")
	err := h.Impair(netem.Impairment{Delay: 20 * time.Millisecond, Loss: 1})
	if errors.Is(netem.NetemAvailable(), netem.ErrNoNetem) {
		if !errors.Is(err, netem.ErrNoNetem) {
			t.Fatalf("kernel without sch_netem: got %v, want ErrNoNetem", err)
		}
		t.Skip("needs sch_netem: the kernel has no netem qdisc (checked that the error says so)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Impair(netem.Impairment{}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := h.Impair(netem.Impairment{}); err != nil {
		t.Fatalf("remove twice: %v", err)
	}
}
