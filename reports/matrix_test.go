package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// matrixReport is the report of a real run of the Lab E syn and synack
// sweeps' quick cells (Linux 6.18, Oracle MySQL 9.7.4), without steps.
func matrixReport(t *testing.T) *Report {
	t.Helper()
	b, err := os.ReadFile("testdata/matrix-report.json")
	if err != nil {
		t.Fatal(err)
	}
	r := &Report{}
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	r.BuildMatrices()
	return r
}

func TestBuildMatrices(t *testing.T) {
	r := matrixReport(t)
	if len(r.Matrices) != 2 {
		t.Fatalf("%d matrices, want 2", len(r.Matrices))
	}
	syn := r.Matrices[0]
	if syn.Name != "lab-e/syn-sweep" || strings.Join(syn.Axes, ",") != "tcp_syn_retries,linear" || len(syn.Cells) != 6 {
		t.Fatalf("matrix %s over %v with %d cells", syn.Name, syn.Axes, len(syn.Cells))
	}
	c := syn.Cells[5]
	if strings.Join(c.Values, ",") != "3,4" || c.Server != "mysql/process" || c.Status != "pass" || len(c.Checks) != 3 {
		t.Errorf("cell %+v", c)
	}
	if got := documentedValue(c.Checks[0].Documented); got != 6.0 {
		t.Errorf("documented %v (%T), want the article's 6", got, got)
	}
}

func TestMatrixGolden(t *testing.T) {
	r := matrixReport(t)
	var csv, table bytes.Buffer
	for _, m := range r.Matrices {
		if err := WriteMatrixCSV(&csv, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteMatrices(&table, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix.golden.csv", csv.Bytes())
	golden(t, "matrix.golden.txt", table.Bytes())
}

// The plots: the SYN count and the time to give up against each numeric
// axis, one series per value of the other axis, a point per cell.
func TestMatrixPlots(t *testing.T) {
	r := matrixReport(t)
	plots := r.Matrices[0].Plots()
	titles := map[string]string{}
	for _, p := range plots {
		titles[p.Title] = string(p.SVG)
	}
	for _, want := range []string{
		"client SYN retransmissions and backoff: count against tcp_syn_retries",
		"client SYN retransmissions and backoff: count against linear",
		"connect error and time to give up: elapsed_s against tcp_syn_retries",
		"the server's rule dropped every SYN: packets against tcp_syn_retries",
	} {
		svg, ok := titles[want]
		if !ok {
			t.Errorf("no plot %q (have %d)", want, len(plots))
			continue
		}
		if n := strings.Count(svg, "<circle"); n < 6 {
			t.Errorf("%s: %d circles, want a point per cell and a legend mark per series", want, n)
		}
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if !strings.Contains(html, "matrix lab-e/syn-sweep") || strings.Count(html, "<svg") != len(plots)+len(r.Matrices[1].Plots()) {
		t.Errorf("the page lacks the matrix table or its %d plots", len(plots))
	}
}

// The comparison table of Lab B's remedies, from a real run (Linux 6.18,
// Oracle MySQL 9.7.4): one row per cell, one column per headline figure.
func TestMatrixMetrics(t *testing.T) {
	b, err := os.ReadFile("testdata/remedies-report.json")
	if err != nil {
		t.Fatal(err)
	}
	r := &Report{}
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	r.BuildMatrices()
	if len(r.Matrices) != 1 || len(r.Matrices[0].Cells) != 7 {
		t.Fatalf("matrices %+v", r.Matrices)
	}
	m := r.Matrices[0]
	want := "connections/s,connect p50 ms,connect p99 ms,SYN retransmitted,errors,SYN→bare ACK,server TIME_WAIT peak,app TIME_WAIT peak"
	if got := strings.Join(m.Metrics, ","); got != want {
		t.Errorf("metrics %s, want %s", got, want)
	}
	if got := m.Cells[0].Metric("SYN→bare ACK"); got == "" || got == "0" {
		t.Errorf("the incident's cell has %q SYNs answered by a bare ACK", got)
	}
	if got := m.Cells[1].Metric("SYN→bare ACK"); got != "0" {
		t.Errorf("long connections have %q", got)
	}
	if got := m.Cells[0].Metric("no such figure"); got != "" {
		t.Errorf("a missing figure reads %q", got)
	}
	var table, html bytes.Buffer
	if err := WriteMatrices(&table, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "remedies.golden.txt", table.Bytes())
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(html.String(), `<table class="compare">`); n != 1 {
		t.Errorf("%d comparison tables in the HTML, want 1", n)
	}
}
