package reports

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// CellInfo says which matrix cell a scenario instance ran: the scenario
// the matrix belongs to, its axes and this cell's values.
type CellInfo struct {
	Matrix string   `json:"matrix"`
	Axes   []string `json:"axes"`
	Values []string `json:"values"`
}

// Matrix is one scenario's sweep, gathered from its instances: a row per
// cell (and server), and per check the documented, model and observed
// values side by side.
type Matrix struct {
	Name  string        `json:"name"`
	Axes  []string      `json:"axes"`
	Cells []*MatrixCell `json:"cells"`
	// Metrics names the cells' headline figures, in the order they first
	// appear: the columns of the comparison table.
	Metrics []string `json:"metrics,omitempty"`
}

// MatrixCell is one cell of a matrix as it ran.
type MatrixCell struct {
	Values   []string       `json:"values"`
	Instance string         `json:"instance"`
	Server   string         `json:"server"`
	Status   string         `json:"status"`
	Checks   []*MatrixCheck `json:"checks"`
	// Metrics are the instance's headline figures by name.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Metric returns a cell's figure as text, "" if it has none.
func (c *MatrixCell) Metric(name string) string {
	v, ok := c.Metrics[name]
	if !ok {
		return ""
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// MatrixCheck is one check of a cell: the same values as the instance's
// check in report.json.
type MatrixCheck struct {
	Name       string `json:"name"`
	Status     string `json:"status"`
	Documented any    `json:"documented,omitempty"`
	Expected   any    `json:"expected"`
	Observed   any    `json:"observed"`
	Tolerance  any    `json:"tolerance,omitempty"`
}

// BuildMatrices gathers the report's matrix instances by the scenario they
// come from, in the order they first appear.
func (r *Report) BuildMatrices() {
	r.Matrices = nil
	byName := map[string]*Matrix{}
	for _, s := range r.Scenarios {
		if s == nil || s.Cell == nil {
			continue
		}
		m := byName[s.Cell.Matrix]
		if m == nil {
			m = &Matrix{Name: s.Cell.Matrix, Axes: s.Cell.Axes}
			byName[m.Name] = m
			r.Matrices = append(r.Matrices, m)
		}
		cell := &MatrixCell{Values: s.Cell.Values, Instance: s.Name, Server: serverLabel(s.Environment.Server), Status: s.Status()}
		for _, mt := range s.Metrics {
			if cell.Metrics == nil {
				cell.Metrics = map[string]float64{}
			}
			cell.Metrics[mt.Name] = mt.Value
			if !contains(m.Metrics, mt.Name) {
				m.Metrics = append(m.Metrics, mt.Name)
			}
		}
		for _, c := range s.Checks {
			st := "pass"
			switch {
			case c.Skipped:
				st = "skip"
			case !c.Passed:
				st = "fail"
			}
			cell.Checks = append(cell.Checks, &MatrixCheck{Name: c.Name, Status: st, Documented: documentedValue(c.Documented),
				Expected: c.Expected, Observed: c.Observed, Tolerance: c.Tolerance})
		}
		m.Cells = append(m.Cells, cell)
	}
}

func serverLabel(s ServerInfo) string {
	if s.Flavor == "" {
		return ""
	}
	return s.Flavor + "/" + s.Engine
}

// documentedValue is the article's figure without its note.
func documentedValue(d any) any {
	if m, ok := generic(d).(map[string]any); ok {
		return m["value"]
	}
	return generic(d)
}

// generic is a value as report.json carries it: through JSON, so that
// every number is a float64, every list a []any and every struct a map,
// whatever type the check built it with (an int count, a []float64).
func generic(v any) any {
	b, err := json.Marshal(jsonValue(v))
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// WriteMatrices writes each matrix as a table: a row per cell and check,
// with model, observed and the result.
func WriteMatrices(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	for _, m := range r.Matrices {
		fmt.Fprintf(bw, "\nmatrix %s: %d cells over %s\n", m.Name, len(m.Cells), strings.Join(m.Axes, ", "))
		if len(m.Metrics) > 0 {
			rows := [][]string{append(append(append([]string{}, m.Axes...), "server"), append(append([]string{}, m.Metrics...), "result")...)}
			for _, c := range m.Cells {
				row := append(append([]string{}, c.Values...), c.Server)
				for _, n := range m.Metrics {
					row = append(row, c.Metric(n))
				}
				rows = append(rows, append(row, c.Status))
			}
			writeRows(bw, rows)
			bw.WriteString("\n")
		}
		header := append(append([]string{}, m.Axes...), "server", "check", "model (expected)", "observed", "result")
		rows := [][]string{header}
		for _, c := range m.Cells {
			for _, ck := range c.Checks {
				row := append(append([]string{}, c.Values...), c.Server, cell(ck.Name), cell(Render(ck.Expected)), cell(Render(ck.Observed)), ck.Status)
				rows = append(rows, row)
			}
		}
		writeRows(bw, rows)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write matrices: %w", err)
	}
	return nil
}

// WriteMatrixCSV writes one matrix as CSV: a row per cell and check; the
// axes, the server, the check and its result, then every scalar of the
// expected and observed values as columns of their own (expected.count,
// observed.count, ...), lists joined with spaces. report.json holds the
// same numbers.
func WriteMatrixCSV(w io.Writer, m *Matrix) error {
	keys := map[string]bool{}
	for _, c := range m.Cells {
		for _, ck := range c.Checks {
			for k := range flatten("expected", ck.Expected) {
				keys[k] = true
			}
			for k := range flatten("observed", ck.Observed) {
				keys[k] = true
			}
		}
	}
	cols := sortedKeys(keys)
	cw := csv.NewWriter(w)
	header := append(append([]string{}, m.Axes...), "server", "instance", "check", "status", "documented")
	if err := cw.Write(append(header, cols...)); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	for _, c := range m.Cells {
		for _, ck := range c.Checks {
			vals := flatten("expected", ck.Expected)
			for k, v := range flatten("observed", ck.Observed) {
				vals[k] = v
			}
			row := append(append([]string{}, c.Values...), c.Server, c.Instance, ck.Name, ck.Status, scalarText(ck.Documented))
			for _, k := range cols {
				row = append(row, vals[k])
			}
			if err := cw.Write(row); err != nil {
				return fmt.Errorf("write csv: %w", err)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// flatten turns a check's value into columns: the top-level scalars and
// lists of a map, by prefix.key; a scalar alone as prefix.
func flatten(prefix string, v any) map[string]string {
	out := map[string]string{}
	switch x := generic(v).(type) {
	case nil:
	case map[string]any:
		for k, e := range x {
			if s, ok := scalarOrList(e); ok {
				out[prefix+"."+k] = s
			}
		}
	default:
		if s, ok := scalarOrList(x); ok {
			out[prefix] = s
		}
	}
	return out
}

func scalarOrList(v any) (string, bool) {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, ok := scalarOrList(e)
			if !ok {
				return "", false
			}
			parts[i] = s
		}
		return strings.Join(parts, " "), true
	case map[string]any:
		return "", false
	}
	return scalarText(v), true
}

func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// numeric returns a value as a number, if it is one.
func numeric(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x)
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

// writeRows writes rows as aligned columns.
func writeRows(bw *bufio.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, v := range row {
			widths[i] = max(widths[i], len([]rune(v)))
		}
	}
	for _, row := range rows {
		bw.WriteString(" ")
		for i, v := range row {
			bw.WriteString(" " + pad(v, widths[i]))
		}
		bw.WriteString("\n")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
