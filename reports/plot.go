package reports

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
)

// Plot is one SVG chart of a matrix: a numeric value of a check (a count, a
// time) against a numeric axis, the model as a line with its tolerance
// band and the observations as points, one series per combination of the
// other axes and the server.
type Plot struct {
	Title string
	SVG   template.HTML
}

// plotSeries is one line of a plot.
type plotSeries struct {
	label  string
	points []plotPoint
}

type plotPoint struct {
	x, model, tol, obs float64
	hasObs             bool
	pass               bool
}

// palette colours the series; a colour-blind-safe set.
var palette = []string{"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"}

// Plots returns the matrix's charts: for every axis whose values are all
// numbers, every check and every numeric field the check both expects and
// observes, the observed values against the model's along that axis.
func (m *Matrix) Plots() []Plot {
	var out []Plot
	for ai, axis := range m.Axes {
		if !numericAxis(m, ai) {
			continue
		}
		for _, check := range m.checkNames() {
			for _, field := range m.numericFields(check) {
				series := m.series(ai, check, field)
				if len(series) == 0 || distinctX(series) < 2 {
					continue
				}
				title := fmt.Sprintf("%s: %s against %s", check, field, axis)
				out = append(out, Plot{Title: title, SVG: drawPlot(axis, field, series)})
			}
		}
	}
	return out
}

func numericAxis(m *Matrix, ai int) bool {
	for _, c := range m.Cells {
		if _, ok := numeric(c.Values[ai]); !ok {
			return false
		}
	}
	return len(m.Cells) > 0
}

func (m *Matrix) checkNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range m.Cells {
		for _, ck := range c.Checks {
			if !seen[ck.Name] {
				seen[ck.Name] = true
				out = append(out, ck.Name)
			}
		}
	}
	return out
}

// numericFields are the fields of a check that are numbers both in what
// the model expected and in what was observed, in some cell.
func (m *Matrix) numericFields(check string) []string {
	set := map[string]bool{}
	for _, c := range m.Cells {
		for _, ck := range c.Checks {
			if ck.Name != check {
				continue
			}
			exp, _ := generic(ck.Expected).(map[string]any)
			obs, _ := generic(ck.Observed).(map[string]any)
			for k, v := range exp {
				if _, ok := v.(float64); !ok {
					continue
				}
				if o, ok := obs[k].(float64); ok && !math.IsNaN(o) {
					set[k] = true
				}
			}
		}
	}
	return sortedKeys(set)
}

func (m *Matrix) series(ai int, check, field string) []plotSeries {
	byLabel := map[string]*plotSeries{}
	var order []string
	for _, c := range m.Cells {
		var others []string
		for i, v := range c.Values {
			if i != ai {
				others = append(others, m.Axes[i]+"="+v)
			}
		}
		if c.Server != "" {
			others = append(others, c.Server)
		}
		label := strings.Join(others, " ")
		for _, ck := range c.Checks {
			if ck.Name != check {
				continue
			}
			exp, _ := generic(ck.Expected).(map[string]any)
			obs, _ := generic(ck.Observed).(map[string]any)
			tol, _ := generic(ck.Tolerance).(map[string]any)
			model, ok := exp[field].(float64)
			if !ok {
				continue
			}
			x, _ := numeric(c.Values[ai])
			p := plotPoint{x: x, model: model, pass: ck.Status == "pass"}
			if t, ok := tol[field].(float64); ok {
				p.tol = t
			}
			if o, ok := obs[field].(float64); ok {
				p.obs, p.hasObs = o, true
			}
			s := byLabel[label]
			if s == nil {
				s = &plotSeries{label: label}
				byLabel[label] = s
				order = append(order, label)
			}
			s.points = append(s.points, p)
		}
	}
	var out []plotSeries
	for _, l := range order {
		s := byLabel[l]
		sort.Slice(s.points, func(i, j int) bool { return s.points[i].x < s.points[j].x })
		out = append(out, *s)
	}
	return out
}

func distinctX(series []plotSeries) int {
	xs := map[float64]bool{}
	for _, s := range series {
		for _, p := range s.points {
			xs[p.x] = true
		}
	}
	return len(xs)
}

// Plot geometry, in SVG user units.
const (
	plotW, plotH                   = 460, 250
	padL, padR, padT, padB float64 = 56, 14, 12, 40
)

// drawPlot draws one chart: axes with ticks, per series the tolerance band
// and the model's line, and the observations as points (hollow where the
// check failed).
func drawPlot(xname, yname string, series []plotSeries) template.HTML {
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymax := 0.0
	for _, s := range series {
		for _, p := range s.points {
			xmin, xmax = math.Min(xmin, p.x), math.Max(xmax, p.x)
			ymax = math.Max(ymax, p.model+p.tol)
			if p.hasObs {
				ymax = math.Max(ymax, p.obs)
			}
		}
	}
	if ymax <= 0 {
		ymax = 1
	}
	ymax = niceCeil(ymax * 1.05)
	if xmax == xmin {
		xmax = xmin + 1
	}
	iw, ih := plotW-padL-padR, plotH-padT-padB
	sx := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*iw }
	sy := func(y float64) float64 { return padT + ih - y/ymax*ih }
	var b strings.Builder
	legendH := 16 * len(series)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" font-family="system-ui, sans-serif" font-size="11">`, plotW, plotH+legendH, plotW, plotH+legendH)
	// Axes and ticks.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`, padL, padT+ih, padL+iw, padT+ih)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`, padL, padT, padL, padT+ih)
	xs := map[float64]bool{}
	for _, s := range series {
		for _, p := range s.points {
			xs[p.x] = true
		}
	}
	for x := range xs {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
			sx(x), padT+ih, sx(x), padT+ih+4, sx(x), padT+ih+16, template.HTMLEscapeString(formatFloat(x)))
	}
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			padL, sy(y), padL+iw, sy(y), padL-4, sy(y)+4, template.HTMLEscapeString(formatFloat(y)))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, padL+iw/2, padT+ih+32, template.HTMLEscapeString(xname))
	fmt.Fprintf(&b, `<text x="12" y="%.1f" text-anchor="middle" transform="rotate(-90 12 %.1f)">%s</text>`, padT+ih/2, padT+ih/2, template.HTMLEscapeString(yname))
	for i, s := range series {
		col := palette[i%len(palette)]
		// The tolerance band: model ± tolerance, a polygon over the points.
		var upper, lower []string
		for _, p := range s.points {
			upper = append(upper, fmt.Sprintf("%.1f,%.1f", sx(p.x), sy(p.model+p.tol)))
			lower = append([]string{fmt.Sprintf("%.1f,%.1f", sx(p.x), sy(math.Max(p.model-p.tol, 0)))}, lower...)
		}
		fmt.Fprintf(&b, `<polygon points="%s" fill="%s" fill-opacity="0.15" stroke="none"/>`, strings.Join(append(upper, lower...), " "), col)
		var line []string
		for _, p := range s.points {
			line = append(line, fmt.Sprintf("%.1f,%.1f", sx(p.x), sy(p.model)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="4 3"/>`, strings.Join(line, " "), col)
		for _, p := range s.points {
			if !p.hasObs {
				continue
			}
			fill := col
			if !p.pass {
				fill = "#fff"
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s"><title>%s=%s: observed %s, model %s ± %s</title></circle>`,
				sx(p.x), sy(p.obs), fill, col, template.HTMLEscapeString(xname), formatFloat(p.x), formatFloat(p.obs), formatFloat(p.model), formatFloat(p.tol))
		}
		ly := plotH + 12 + 16*i
		label := s.label
		if label == "" {
			label = "observed (points) and model (dashed, band: tolerance)"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/><circle cx="%.1f" cy="%d" r="3.5" fill="%s"/><text x="%.1f" y="%d">%s</text>`,
			padL, ly-4, padL+20, ly-4, col, padL+10, ly-4, col, padL+28, ly, template.HTMLEscapeString(label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
