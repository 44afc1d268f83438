package netem

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
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
		for _, k := range keys {
			if !strings.HasPrefix(k, "net.") {
				return fmt.Errorf("sysctl %s: %w", k, ErrNotNamespaced)
			}
			p := sysctlPath(k)
			// O_WRONLY without O_CREATE: a key absent in this namespace is
			// refused rather than created.
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("sysctl %s: %w", k, ErrNotNamespaced)
			}
			if err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
			_, err = f.WriteString(kv[k])
			cerr := f.Close()
			if err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, kv[k], err)
			}
			if cerr != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, kv[k], cerr)
			}
		}
		return nil
	})
}

// normalize folds the kernel's tab-separated multi-value format
// ("32768\t60999") and the user's spaces into single spaces.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }
