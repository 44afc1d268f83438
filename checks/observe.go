package checks

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

// clientStep returns the result of the client step a check names.
func (o *Observations) clientStep(c *scenarios.Check, out *reports.Check) (*Step, bool) {
	res := o.Steps[c.Step]
	if res == nil || res.Client == nil {
		out.Message = fmt.Sprintf("step %s did not run", c.Step)
		return nil, false
	}
	return res, true
}

// flow finds the TCP flow a client step opened, in the capture of host
// (default: the client's host if captured, else the server's).
func (o *Observations) flow(c *scenarios.Check, res *Step, prefer string, out *reports.Check) (*capture.Flow, string, bool) {
	host := c.Host
	if host == "" {
		host = prefer
		if _, ok := o.Analyses[host]; !ok {
			for _, h := range []string{res.Host, o.Scenario.Server.Host} {
				if _, ok := o.Analyses[h]; ok {
					host = h
					break
				}
			}
		}
	}
	a := o.Analyses[host]
	if a == nil {
		out.Message = fmt.Sprintf("no capture on host %s: add it to captures", host)
		return nil, host, false
	}
	cl := o.Addresses[res.Host]
	sh := o.Addresses[o.Scenario.Server.Host]
	srv := netip.AddrPortFrom(sh, uint16(o.Scenario.Server.Port))
	from, to := res.Start.Add(-100*time.Millisecond), res.End.Add(500*time.Millisecond)
	flows := a.Flows(cl, srv)
	// A connection whose address is known (a go client, a session opened
	// by an earlier step, a client whose thread id is in the processlist
	// samples) is found by it; otherwise by when it started, which must
	// then be unambiguous.
	local := res.Client.Local
	if local == "" && res.Client.ConnID != 0 {
		local = o.threadHost(res.Client.ConnID)
	}
	if local != "" {
		for _, f := range flows {
			if f.Client.String() == local && len(f.Packets) > 0 {
				return f, host, true
			}
		}
	}
	var during []*capture.Flow
	for _, f := range flows {
		if len(f.Packets) == 0 {
			continue
		}
		t := f.Packets[0].Time
		if !t.Before(from) && !t.After(to) {
			during = append(during, f)
		}
	}
	switch len(during) {
	case 1:
		return during[0], host, true
	case 0:
	default:
		var ports []string
		for _, f := range during {
			ports = append(ports, f.Client.String())
		}
		out.Message = fmt.Sprintf("%d TCP flows from %s start during step %s (%s): cannot tell which is the step's; use the go client or observe.processlist", len(during), cl, res.Name, strings.Join(ports, ", "))
		return nil, host, false
	}
	out.Message = fmt.Sprintf("no TCP flow from %s to %s during step %s in %s.pcap", cl, srv, res.Name, host)
	return nil, host, false
}

// stepFlow finds the client step a check names and the flow it opened, in
// the capture of the check's host, else of the client's host, or of the
// server's host when serverSide says the server's view is the natural one.
func (o *Observations) stepFlow(c *scenarios.Check, out *reports.Check, serverSide bool) (*Step, *capture.Flow, string, bool) {
	res, ok := o.clientStep(c, out)
	if !ok {
		return nil, nil, "", false
	}
	prefer := res.Host
	if serverSide {
		prefer = o.Scenario.Server.Host
	}
	f, host, ok := o.flow(c, res, prefer, out)
	return res, f, host, ok
}

// offset renders a packet time relative to the start of the timeline.
func (o *Observations) offset(t time.Time) string {
	return fmt.Sprintf("+%.3fs", t.Sub(o.T0).Seconds())
}

func (o *Observations) evidence(host string, pkts []capture.Packet, what string) []string {
	var out []string
	for _, p := range pkts {
		out = append(out, fmt.Sprintf("%s.pcap frame %d %s %s -> %s at %s", host, p.Frame, what, p.Src, p.Dst, o.offset(p.Time)))
	}
	return out
}

func intervals(pkts []capture.Packet) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(pkts); i++ {
		out = append(out, pkts[i].Time.Sub(pkts[i-1].Time))
	}
	return out
}

func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = round3(d.Seconds())
	}
	return out
}

// sender is the side whose retransmissions or probes a check counts: the
// server when the check names the server's host, else the client.
func (o *Observations) sender(c *scenarios.Check, res *Step, f *capture.Flow) (netip.AddrPort, string) {
	if c.Host != "" && c.Host == o.Scenario.Server.Host {
		return f.Server, o.Scenario.Server.Host
	}
	return f.Client, res.Host
}

// every is the socket sampling period on a host.
func (o *Observations) every(host string) time.Duration {
	for _, o := range o.Scenario.Observe.Sockets {
		if o.Host == host {
			return o.Every.D()
		}
	}
	return 100 * time.Millisecond
}

// threadHost is the Host column (address:port) of server thread id.
func (o *Observations) threadHost(id int64) string {
	for _, s := range o.Threads {
		for _, th := range s.Threads {
			if th.ID == id && strings.Contains(th.Host, ":") {
				return th.Host
			}
		}
	}
	return ""
}

// sec renders a time as seconds from the start of the timeline.
func (o *Observations) sec(t time.Time) float64 { return round3(t.Sub(o.T0).Seconds()) }

// docValue is the documented value, or nil.
func docValue(c *scenarios.Check) any {
	if c.Documented == nil {
		return nil
	}
	return c.Documented.Value
}

func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case uint64:
		return int(x), true
	}
	return 0, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func eventsText(cr *client.Result) string {
	var b strings.Builder
	for _, ev := range cr.Events {
		b.WriteString(ev.What)
		b.WriteByte('\n')
	}
	return b.String()
}

func joinList(l []string) string { return strings.Join(l, ", ") }
