package netem

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNotNamespaced is returned for a sysctl that the kernel does not keep per
// network namespace: inside a child namespace such keys are absent, so
// labrun can never change the host's value through them.
var ErrNotNamespaced = errors.New("no such per-namespace sysctl")

// SetSysctls writes sysctls in the host's namespace, in key order, and reads
// each back; a value the kernel stored differently is an error.
func (h *Host) SetSysctls(kv map[string]string) (map[string]string, error) {
	if err := setSysctls(h.NS, kv); err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	got, err := h.ReadSysctls(keys)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if normalize(got[k]) != normalize(kv[k]) {
			return got, fmt.Errorf("host %s: sysctl %s: wrote %q, kernel kept %q", h.Name, k, kv[k], got[k])
		}
	}
	return got, nil
}

// ReadSysctls reads keys in the host's namespace; absent keys are left out.
func (h *Host) ReadSysctls(keys []string) (map[string]string, error) {
	out := map[string]string{}
	err := Do(h.NS, func() error {
		for _, k := range keys {
			b, err := os.ReadFile(sysctlPath(k))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read sysctl %s: %w", k, err)
			}
			out[k] = normalize(string(b))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return out, nil
}

func setSysctls(ns netns.NsHandle, kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return Do(ns, func() error {
		// Every key is checked before any is written, and the keys already
		// written are put back when a later write fails, so that a refused
		// set changes nothing: the run's record of its sysctls stays true.
		old := make(map[string]string, len(keys))
		for _, k := range keys {
			if !strings.HasPrefix(k, "net.") {
				return fmt.Errorf("sysctl %s: %w", k, ErrNotNamespaced)
			}
			p := sysctlPath(k)
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("sysctl %s: %w", k, ErrNotNamespaced)
			}
			if err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
			// Some global keys are shown read-only inside a child namespace
			// (net.core.wmem_default and friends since Linux 6.15): the
			// value there is the host's.
			if err := unix.Access(p, unix.W_OK); errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return fmt.Errorf("sysctl %s: read-only in a child namespace: %w", k, ErrNotNamespaced)
			}
			old[k] = string(b)
		}
		for i, k := range keys {
			if err := writeSysctl(k, kv[k]); err != nil {
				for _, w := range slices.Backward(keys[:i]) {
					writeSysctl(w, old[w])
				}
				return err
			}
		}
		return nil
	})
}

// writeSysctl writes one key in the calling thread's namespace.
func writeSysctl(k, v string) error {
	// O_WRONLY without O_CREATE: a key absent in this namespace is refused
	// rather than created.
	f, err := os.OpenFile(sysctlPath(k), os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s: %w", k, ErrNotNamespaced)
	}
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", k, err)
	}
	_, err = f.WriteString(v)
	cerr := f.Close()
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
	}
	if cerr != nil {
		return fmt.Errorf("sysctl %s=%s: %w", k, v, cerr)
	}
	return nil
}

// normalize folds the kernel's tab-separated multi-value format
// ("32768\t60999") and the user's spaces into single spaces.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }
