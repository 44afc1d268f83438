package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/labrun/labrun/scenarios"
)

// parseSets reads --set flags, "PATH=v1,v2,...", in order.
func parseSets(sets []string) ([][2]any, error) {
	var out [][2]any
	for _, s := range sets {
		path, vals, ok := strings.Cut(s, "=")
		path = strings.TrimSpace(path)
		if !ok || path == "" {
			return nil, fmt.Errorf("--set %s: want PATH=VALUE[,VALUE...], e.g. client.net.ipv4.tcp_retries2=3,4,6", s)
		}
		var values []string
		for _, v := range strings.Split(vals, ",") {
			if v = strings.TrimSpace(v); v != "" {
				values = append(values, v)
			}
		}
		out = append(out, [2]any{path, values})
	}
	return out, nil
}

// expand loads what a scenario file runs as: its --set axes added to its
// matrix, then one instance per cell and server.
func expand(sc *scenarios.Scenario, sets [][2]any, flavors, engines []string) ([]*scenarios.Scenario, error) {
	for _, s := range sets {
		path := s[0].(string)
		if err := sc.SetAxis(path, s[1].([]string)); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.File, err)
		}
		if err := sysctlExists(path); err != nil {
			return nil, fmt.Errorf("%s: --set %s: %w", sc.File, path, err)
		}
	}
	return scenarios.Expand(sc, flavors, engines)
}

// sysctlExists says whether the sysctl an axis sets (HOST.net.KEY) exists
// on this kernel, from its file under /proc/sys (read, never written): a
// misspelt key on the command line is refused before anything is created.
// The lab interface's per-interface keys are looked up under "all".
func sysctlExists(set string) error {
	_, key, ok := strings.Cut(set, ".")
	if !ok || !strings.HasPrefix(key, "net.") {
		return nil
	}
	parts := strings.Split(key, ".")
	if len(parts) > 3 && parts[2] == "conf" || len(parts) > 3 && parts[2] == "neigh" {
		parts[3] = "all"
		if parts[2] == "neigh" {
			parts[3] = "default"
		}
	}
	p := "/proc/sys/" + strings.Join(parts, "/")
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("no sysctl %s on this kernel (%s)", key, p)
	}
	return nil
}
