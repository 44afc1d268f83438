package main

import (
	"fmt"
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
		if err := sc.SetAxis(s[0].(string), s[1].([]string)); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.File, err)
		}
	}
	return scenarios.Expand(sc, flavors, engines)
}
