package reports

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// DiskInfo is the server's own disk (server.disk), when it has one.
type DiskInfo struct {
	Device     string `json:"device"`
	Size       int64  `json:"size_bytes"`
	Filesystem string `json:"filesystem"`
}

// IOPoint is one sample of the server's disk, as iostat -x shows it:
// utilisation 0..1, average wait per IO, average queue depth, and the
// bytes moved since the previous sample.
type IOPoint struct {
	AtS        float64 `json:"at_s"`
	Util       float64 `json:"util"`
	AwaitMs    float64 `json:"await_ms"`
	QueueDepth float64 `json:"queue_depth"`
	ReadBytes  uint64  `json:"read_bytes"`
	WriteBytes uint64  `json:"write_bytes"`
	Err        string  `json:"error,omitempty"`
}

// IOSummary is the server disk's IO over the run: the samples and their
// peaks, for the report's IO lane.
type IOSummary struct {
	Samples      int       `json:"samples"`
	Errors       int       `json:"errors,omitempty"`
	MaxUtil      float64   `json:"max_util"`
	MaxAwaitMs   float64   `json:"max_await_ms"`
	MaxQueue     float64   `json:"max_queue_depth"`
	WrittenBytes uint64    `json:"written_bytes"`
	ReadBytes    uint64    `json:"read_bytes"`
	Points       []IOPoint `json:"points"`
	// Faults are the disk faults of the timeline, for the lane's shading.
	Faults []IOFault `json:"faults,omitempty"`
}

// IOFault is a disk fault's time on the timeline.
type IOFault struct {
	Step   string  `json:"step"`
	Kind   string  `json:"kind"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
}

// SummarizeIO gathers the samples and their peaks.
func SummarizeIO(points []IOPoint) *IOSummary {
	s := &IOSummary{Samples: len(points), Points: points}
	for _, p := range points {
		if p.Err != "" {
			s.Errors++
			continue
		}
		s.MaxUtil = math.Max(s.MaxUtil, p.Util)
		s.MaxAwaitMs = math.Max(s.MaxAwaitMs, p.AwaitMs)
		s.MaxQueue = math.Max(s.MaxQueue, p.QueueDepth)
		s.WrittenBytes += p.WriteBytes
		s.ReadBytes += p.ReadBytes
	}
	return s
}

// ioLane draws utilisation (line, left axis 0..100 %) and the bytes
// written per sample (bars) over the timeline, with the disk faults
// shaded, so that a stall with an idle disk and a saturated disk look
// different at a glance.
func ioLane(s *IOSummary) template.HTML {
	if s == nil || len(s.Points) == 0 {
		return ""
	}
	const w, h, l, r, t, bot = 640.0, 160.0, 44.0, 12.0, 10.0, 28.0
	iw, ih := w-l-r, h-t-bot
	tmax := 0.0
	var wmax uint64
	for _, p := range s.Points {
		tmax = math.Max(tmax, p.AtS)
		wmax = max(wmax, p.WriteBytes)
	}
	for _, f := range s.Faults {
		tmax = math.Max(tmax, f.EndS)
	}
	if tmax <= 0 {
		tmax = 1
	}
	tmax = niceCeil(tmax)
	sx := func(x float64) float64 { return l + x/tmax*iw }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" font-family="system-ui, sans-serif" font-size="11">`, w, h+16, w, h+16)
	for i, f := range s.Faults {
		col := map[string]string{"freeze": "#4e79a7", "throttle": "#f28e2b", "load": "#e15759"}[f.Kind]
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.15"><title>%s (%s) %.3f–%.3f s</title></rect>`,
			sx(f.StartS), t, math.Max(sx(f.EndS)-sx(f.StartS), 1), ih, col, template.HTMLEscapeString(f.Step), f.Kind, f.StartS, f.EndS)
		// One line per fault: overlapping faults (a load on a throttled
		// disk) keep readable labels.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`, sx(f.StartS)+2, t+11+12*float64(i%8), col, template.HTMLEscapeString(f.Kind+" "+f.Step))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`, l, t+ih, l+iw, t+ih)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`, l, t, l, t+ih)
	for i := 0; i <= 4; i++ {
		y := t + ih - float64(i)/4*ih
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="end">%d%%</text>`, l, y, l+iw, y, l-4, y+4, i*25)
	}
	for i := 0; i <= 5; i++ {
		x := tmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%ss</text>`, sx(x), t+ih+14, formatFloat(x))
	}
	bw := math.Max(iw/float64(len(s.Points))*0.8, 1)
	var line []string
	for _, p := range s.Points {
		if p.Err != "" {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c00">×<title>%s</title></text>`, sx(p.AtS), t+ih-2, template.HTMLEscapeString(p.Err))
			continue
		}
		if wmax > 0 && p.WriteBytes > 0 {
			bh := float64(p.WriteBytes) / float64(wmax) * ih * 0.5
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#999" fill-opacity="0.5"><title>+%.3fs: %d bytes written</title></rect>`, sx(p.AtS)-bw, t+ih-bh, bw, bh, p.AtS, p.WriteBytes)
		}
		line = append(line, fmt.Sprintf("%.1f,%.1f", sx(p.AtS), t+ih-math.Min(p.Util, 1)*ih))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#222" stroke-width="1.5"/>`, strings.Join(line, " "))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">line: utilisation; bars: bytes written per sample (max %d); shaded: disk faults</text>`, l, h+12, wmax)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
