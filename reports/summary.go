package reports

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxCell caps a table cell, in characters, so a long observed value cannot
// push the result column off a terminal; report.json keeps the full value.
const maxCell = 36

// maxEvidence is how many evidence lines the summary shows per failed check;
// the rest stay in report.json.
const maxEvidence = 3

// ANSI colors; used only when the caller says the output is a terminal.
const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// WriteSummary writes the terminal summary: per scenario a header line and a
// table of its checks (documented, model and observed side by side), the
// failures with their first evidence lines, and at the end the line
// "N passed, N failed" (plus ", N skipped" when any were), which scripts
// parse and which is therefore never colored.
func WriteSummary(w io.Writer, r *Report, color bool) error {
	bw := bufio.NewWriter(w)
	p := painter(color)
	for i, s := range r.Scenarios {
		if i > 0 {
			bw.WriteString("\n")
		}
		writeScenarioSummary(bw, s, p)
	}
	if len(r.Matrices) > 0 {
		if err := WriteMatrices(bw, r); err != nil {
			return err
		}
	}
	if len(r.Scenarios) > 0 {
		bw.WriteString("\n")
	}
	bw.WriteString(CountLine(r) + "\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// CountLine is the summary's last line: "3 passed, 1 failed", with
// ", 1 skipped" appended when scenarios were skipped.
func CountLine(r *Report) string {
	passed, failed, skipped := r.Counts()
	line := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if skipped > 0 {
		line += fmt.Sprintf(", %d skipped", skipped)
	}
	return line
}

// painter wraps text in a color, or returns it unchanged when color is off.
type painter bool

func (p painter) paint(code, s string) string {
	if !p || s == "" {
		return s
	}
	return code + s + ansiReset
}

func (p painter) status(status, s string) string {
	switch status {
	case "pass":
		return p.paint(ansiGreen, s)
	case "fail":
		return p.paint(ansiRed, s)
	case "skip":
		return p.paint(ansiYellow, s)
	}
	return s
}

func writeScenarioSummary(w *bufio.Writer, s *Scenario, p painter) {
	status := s.Status()
	header := []string{p.status(status, strings.ToUpper(status)), p.paint(ansiBold, s.Name)}
	if server := serverLine(s.Environment.Server); server != "" {
		header = append(header, server)
	}
	header = append(header, fmt.Sprintf("%.1fs", s.DurationS))
	w.WriteString(strings.Join(header, "  ") + "\n")

	if s.Skipped {
		fmt.Fprintf(w, "  skipped: %s\n", firstNonEmpty(oneLine(s.SkipReason), "no reason given"))
	}
	if s.Error != "" {
		fmt.Fprintf(w, "  %s %s\n", p.paint(ansiRed, "error:"), oneLine(s.Error))
	}
	for _, st := range s.Steps {
		if st.Error != "" {
			fmt.Fprintf(w, "  step %s%s at +%.3fs: %s\n", st.Name, onHost(st.Host), st.StartS, oneLine(st.Error))
		}
	}
	if io := s.IO; io != nil {
		dev := ""
		if d := s.Environment.Disk; d != nil {
			dev = " " + d.Device
		}
		fmt.Fprintf(w, "  io%s: %d samples, utilisation up to %.0f%%, await up to %.1f ms, queue up to %.1f, %d bytes written\n",
			dev, io.Samples, 100*io.MaxUtil, io.MaxAwaitMs, io.MaxQueue, io.WrittenBytes)
	}
	if len(s.Checks) == 0 {
		return
	}

	rows := [][]string{{"check", "documented", "model (expected)", "observed", "result"}}
	results := []string{"result"}
	for _, c := range s.Checks {
		result, st := checkResult(c)
		if c.Finding != "" {
			result += " (finding)"
		}
		rows = append(rows, []string{
			cell(c.Name), cell(Render(c.Documented)), cell(Render(c.Expected)), cell(Render(c.Observed)), result,
		})
		results = append(results, p.status(st, result))
	}
	widths := make([]int, len(rows[0])-1)
	for _, row := range rows {
		for i := range widths {
			widths[i] = max(widths[i], utf8.RuneCountInString(row[i]))
		}
	}
	for n, row := range rows {
		w.WriteString(" ")
		for i := range widths {
			w.WriteString(" " + pad(row[i], widths[i]) + " ")
		}
		w.WriteString(" ")
		// The result column is last, so color codes in it cannot upset the
		// alignment of the others.
		w.WriteString(results[n] + "\n")
	}

	for _, c := range s.Checks {
		switch {
		case c.Failed():
			writeFailure(w, c, p)
		case c.Skipped && !s.Skipped:
			fmt.Fprintf(w, "  skip %s: %s\n", c.Name, firstNonEmpty(oneLine(c.Message), "no reason given"))
		}
		if c.Finding != "" {
			fmt.Fprintf(w, "  finding %s: %s\n", c.Name, oneLine(c.Finding))
		}
	}
}

func writeFailure(w *bufio.Writer, c *Check, p painter) {
	vs := "expected " + Render(c.Expected) + ", observed " + Render(c.Observed)
	if c.Tolerance != nil {
		vs += ", tolerance " + Render(c.Tolerance)
	}
	msg := oneLine(c.Message)
	if msg == "" {
		msg, vs = vs, ""
	}
	fmt.Fprintf(w, "  %s %s: %s\n", p.paint(ansiRed, "FAIL"), c.Name, msg)
	if vs != "" {
		fmt.Fprintf(w, "       %s\n", vs)
	}
	for i, e := range c.Evidence {
		if i == maxEvidence {
			fmt.Fprintf(w, "       (%d more evidence lines in report.json)\n", len(c.Evidence)-maxEvidence)
			break
		}
		fmt.Fprintf(w, "       %s\n", oneLine(e))
	}
}

// checkResult returns the word shown in the result column and the status
// that colors it.
func checkResult(c *Check) (word, status string) {
	switch {
	case c.Skipped:
		return "skip", "skip"
	case c.Passed:
		return "ok", "pass"
	default:
		return "FAIL", "fail"
	}
}

func serverLine(s ServerInfo) string {
	return strings.Join(strings.Fields(s.Flavor+" "+s.Version+" "+s.Engine), " ")
}

func onHost(host string) string {
	if host == "" {
		return ""
	}
	return " on " + host
}

// cell shortens a value to maxCell characters, marking the cut.
func cell(s string) string {
	if utf8.RuneCountInString(s) <= maxCell {
		return s
	}
	r := []rune(s)
	return string(r[:maxCell-3]) + "..."
}

func pad(s string, width int) string {
	return s + strings.Repeat(" ", width-utf8.RuneCountInString(s))
}
