package reports

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
)

// WriteHTML writes the report as one self-contained HTML page: styles are
// inline and nothing is fetched, so the page opens from a CI artifact store
// or a laptop without network. Pcap links use the paths in the report.
func WriteHTML(w io.Writer, r *Report) error {
	if err := htmlPage.Execute(w, r); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"render":  Render,
	"note":    documentedNote,
	"server":  serverLine,
	"counts":  CountLine,
	"seconds": func(s float64) string { return fmt.Sprintf("%.1fs", s) },
	"ms":      func(s float64) string { return fmt.Sprintf("%.3f", s) },
	"upper":   strings.ToUpper,
	"result": func(c *Check) string {
		word, _ := checkResult(c)
		return word
	},
	"resultClass": func(c *Check) string {
		_, status := checkResult(c)
		return status
	},
	"keys":   func(m map[string]string) []string { return sortedKeys(m) },
	"plots":  func(m *Matrix) []Plot { return m.Plots() },
	"iolane": ioLane,
	"pct":    func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"join":   strings.Join,
	"hosts": func(m map[string]map[string]string) []string {
		return sortedKeys(m)
	},
}).Parse(htmlTemplate))

// documentedNote digs the article's note out of a documented value, whatever
// shape it came in, so the page can show it under the number.
func documentedNote(v any) string {
	switch x := v.(type) {
	case Documented:
		return x.Note
	case *Documented:
		if x != nil {
			return x.Note
		}
		return ""
	case map[string]any:
		if _, ok := x["value"]; ok && onlyKeys(x, documentedKeys) {
			return toString(x["note"])
		}
		return ""
	case nil, string, []float64:
		return ""
	}
	// Other structs (runner.Documented) are read through their JSON form.
	b, err := json.Marshal(v)
	if err != nil || len(b) == 0 || b[0] != '{' {
		return ""
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return ""
	}
	return documentedNote(m)
}

const htmlTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>labrun report: {{counts .}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.15em; margin-bottom: 0.2em; }
section { border-left: 6px solid #999; padding: 0.2em 1em 0.8em; margin: 1.2em 0; background: #fafafa; }
section.pass { border-color: #2a7d2a; }
section.fail { border-color: #c0392b; }
section.skip { border-color: #b8860b; }
section.matrix { border-color: #0072b2; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
figcaption { font-size: 0.9em; color: #333; }
.badge { display: inline-block; padding: 0 0.4em; border-radius: 3px; color: #fff; font-size: 0.85em; }
.badge.pass { background: #2a7d2a; }
.badge.fail { background: #c0392b; }
.badge.skip { background: #b8860b; }
.meta { color: #555; font-size: 0.9em; margin: 0.2em 0; }
.error { color: #c0392b; font-weight: bold; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.value { font-family: ui-monospace, monospace; }
tr.pass td.result { color: #2a7d2a; font-weight: bold; }
tr.fail td { background: #fdecea; }
tr.fail td.result { color: #c0392b; font-weight: bold; }
tr.skip td { color: #888; }
tr.detail td { background: #fff; border-top: none; font-size: 0.9em; }
.note { color: #666; font-size: 0.85em; font-family: system-ui, sans-serif; }
.finding { color: #8a5a00; }
.type { color: #888; font-size: 0.8em; }
pre { margin: 0.3em 0; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>labrun report</h1>
<p class="meta">labrun {{.Labrun}} · started {{.Started.UTC.Format "2006-01-02 15:04:05 UTC"}} · {{counts .}}</p>
{{range $m := .Matrices}}<section class="matrix">
<h2>matrix {{.Name}}</h2>
{{if .Metrics}}<p class="meta">comparison: each row a cell, each column a headline figure of its run</p>
<table class="compare">
<thead><tr>{{range .Axes}}<th>{{.}}</th>{{end}}<th>server</th>{{range $m.Metrics}}<th>{{.}}</th>{{end}}<th>result</th></tr></thead>
<tbody>
{{range $c := .Cells}}<tr class="{{.Status}}">{{range $c.Values}}<td class="value">{{.}}</td>{{end}}<td>{{$c.Server}}</td>{{range $m.Metrics}}<td class="value">{{$c.Metric .}}</td>{{end}}<td class="result">{{$c.Status}}</td></tr>
{{end}}</tbody>
</table>
{{end}}<p class="meta">{{len .Cells}} cells over {{join .Axes ", "}}; each row is a cell's check, as in the cell's own section below</p>
<table>
<thead><tr>{{range .Axes}}<th>{{.}}</th>{{end}}<th>server</th><th>check</th><th>documented</th><th>model (expected)</th><th>observed</th><th>result</th></tr></thead>
<tbody>
{{range $c := .Cells}}{{range .Checks}}<tr class="{{.Status}}">{{range $c.Values}}<td class="value">{{.}}</td>{{end}}<td>{{$c.Server}}</td><td>{{.Name}}</td><td class="value">{{render .Documented}}</td><td class="value">{{render .Expected}}</td><td class="value">{{render .Observed}}</td><td class="result">{{.Status}}</td></tr>
{{end}}{{end}}</tbody>
</table>
{{range plots $m}}<figure><figcaption>{{.Title}}</figcaption>
{{.SVG}}</figure>
{{end}}</section>
{{end}}{{range $s := .Scenarios}}{{$status := .Status}}
<section class="{{$status}}">
<h2><span class="badge {{$status}}">{{upper $status}}</span> {{.Name}}</h2>
<p class="meta">{{.File}}{{with server .Environment.Server}} · {{.}}{{end}}{{with .Environment.Server.Image}} ({{.}}){{end}}{{with .Environment.Kernel}} · kernel {{.}}{{end}} · {{seconds .DurationS}} (setup {{seconds .Phases.SetupS}}, timeline {{seconds .Phases.TimelineS}}, analysis {{seconds .Phases.AnalysisS}}, teardown {{seconds .Phases.TeardownS}}){{with .Tags}} · tags: {{range $i, $t := .}}{{if $i}}, {{end}}{{$t}}{{end}}{{end}}</p>
{{with .Source}}<p class="meta">source:{{range $k := keys .}} {{$k}}: {{index $s.Source $k}};{{end}}</p>
{{end}}{{if .Skipped}}<p>skipped: {{.SkipReason}}</p>
{{end}}{{with .Error}}<p class="error">error: {{.}}</p>
{{end}}{{with .Checks}}<table>
<thead><tr><th>check</th><th>documented</th><th>model (expected)</th><th>observed</th><th>tolerance</th><th>result</th></tr></thead>
<tbody>
{{range $c := .}}<tr class="{{resultClass .}}">
<td>{{.Name}}<div class="type">{{.Type}}</div></td>
<td class="value">{{render .Documented}}{{with note .Documented}}<div class="note">{{.}}</div>{{end}}</td>
<td class="value">{{render .Expected}}{{with .Explain}}<div class="note">{{.}}</div>{{end}}</td>
<td class="value">{{render .Observed}}</td>
<td class="value">{{render .Tolerance}}</td>
<td class="result">{{result .}}{{if .Finding}} <span class="finding">(finding)</span>{{end}}</td>
</tr>
{{if or .Message .Finding .Evidence}}<tr class="detail"><td colspan="6">{{with .Message}}<div>{{.}}</div>{{end}}{{with .Finding}}<div class="finding">finding: {{.}}</div>{{end}}{{with .Evidence}}<details{{if $c.Failed}} open{{end}}><summary>evidence ({{len .}})</summary><pre>{{range .}}{{.}}
{{end}}</pre></details>{{end}}</td></tr>
{{end}}{{end}}</tbody>
</table>
{{end}}{{with .Steps}}<details><summary>timeline steps ({{len .}})</summary>
<table>
<thead><tr><th>step</th><th>host</th><th>start (s)</th><th>end (s)</th><th>error</th></tr></thead>
<tbody>
{{range .}}<tr{{if .Error}} class="fail"{{end}}><td>{{.Name}}</td><td>{{.Host}}</td><td>{{ms .StartS}}</td><td>{{ms .EndS}}</td><td>{{.Error}}</td></tr>
{{end}}</tbody>
</table>
</details>
{{end}}{{with .IO}}<details open><summary>IO on the server's disk{{with $s.Environment.Disk}} ({{.Device}}, {{.Filesystem}}){{end}}: {{.Samples}} samples, utilisation up to {{pct .MaxUtil}}, await up to {{printf "%.1f" .MaxAwaitMs}} ms, queue up to {{printf "%.1f" .MaxQueue}}, {{.WrittenBytes}} bytes written{{if .Errors}}, {{.Errors}} samples failed{{end}}</summary>
<div class="plot">{{iolane .}}</div>
</details>
{{end}}{{with .Environment.Sysctls}}<details><summary>sysctls read back</summary>
<table>
<thead><tr><th>host</th><th>key</th><th>value</th></tr></thead>
<tbody>
{{range $h := hosts .}}{{$m := index $s.Environment.Sysctls $h}}{{range $k := keys $m}}<tr><td>{{$h}}</td><td>{{$k}}</td><td class="value">{{index $m $k}}</td></tr>
{{end}}{{end}}</tbody>
</table>
</details>
{{end}}<p class="meta">artifacts:{{range .Artifacts.Pcap}} <a href="{{.}}">{{.}}</a>{{else}} no pcap{{end}}{{range .Artifacts.Logs}} · <a href="{{.}}">{{.}}</a>{{end}}{{with .Artifacts.Samples}} · <a href="{{.}}">{{.}}</a>{{end}}{{with .Artifacts.IO}} · <a href="{{.}}">{{.}}</a>{{end}}</p>
</section>
{{end}}</body>
</html>
`
