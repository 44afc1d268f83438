package checks

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// What Lab B's checks share: the burst step a check names, and what the
// scenario says of the way from its connections to the server (the NAT's
// pool of 4-tuples, whether the timestamp option survives, how many
// client clocks share one server-side 4-tuple). Every figure comes from
// the scenario's own rules, sysctls and burst options.

// burstOf returns the burst step a check names and its result.
func (o *Observations) burstOf(c *scenarios.Check, out *reports.Check) (*scenarios.Step, *actions.Burst, *client.BurstResult, bool) {
	st := stepNamed(o.Scenario, c.Step)
	var b *actions.Burst
	ok := false
	if st != nil {
		b, ok = st.Action.(*actions.Burst)
	}
	if !ok {
		out.Message = fmt.Sprintf("step %s is not a burst", c.Step)
		return nil, nil, nil, false
	}
	res := o.Steps[c.Step]
	if res == nil || res.Burst == nil {
		why := "did not run"
		if res != nil && res.Error != "" {
			why = "failed: " + res.Error
		}
		out.Message = fmt.Sprintf("burst %s %s: no connections to judge", c.Step, why)
		return nil, nil, nil, false
	}
	return st, b, res.Burst, true
}

// natRules are the rules the scenario applies (steps not skipped, -A or
// -I), parsed.
func natRules(sc *scenarios.Scenario) []struct {
	Host string
	Rule netem.Rule
} {
	var out []struct {
		Host string
		Rule netem.Rule
	}
	for _, st := range sc.Timeline {
		ipt, ok := st.Action.(*actions.Iptables)
		if !ok || st.Skip {
			continue
		}
		r, err := netem.ParseRule(string(*ipt))
		if err != nil || r.Op == "-D" {
			continue
		}
		out = append(out, struct {
			Host string
			Rule netem.Rule
		}{st.Host, r})
	}
	return out
}

var toSource = regexp.MustCompile(`^([0-9.]+)(?:-([0-9.]+))?(?::(\d+)(?:-(\d+))?)?$`)

// Path is what the scenario says of the way from a burst's connections to
// the server.
type Path struct {
	// SNAT is the rule translating the connections' source, "" if none.
	SNAT string
	// Tuples is the number of server-side 4-tuples the connections can
	// use: the SNAT pool's addresses × ports, or the client's source
	// addresses × ip_local_port_range. TuplesLow and TuplesHigh bound it
	// where the NAT's hash spreads several clients over several pool
	// addresses (two standard deviations of the addresses it uses).
	Tuples, TuplesLow, TuplesHigh int
	// Stripped names the rule that strips the timestamp option, "" if
	// none; Timestamps is whether the option reaches the server and back.
	Stripped   string
	Timestamps bool
	// Clients is the number of client addresses behind one SNAT address.
	Clients int
	Explain string
}

// pathOf works out the path of a burst from host to the server.
func (o *Observations) pathOf(host string, b *actions.Burst) Path {
	sc := o.Scenario
	p := Path{Clients: max(1, b.Sources), Timestamps: true}
	// connect() takes every other port of ip_local_port_range and turns
	// to the others only when those are busy (Linux 4.6, "better use of
	// ephemeral ports in connect()"): the client holds no TIME_WAIT here,
	// so they never are.
	ports := tcpmodel.LocalPorts(o.Sysctls[host])
	p.Tuples = (ports + 1) / 2 * p.Clients
	p.Explain = fmt.Sprintf("%d source address(es) × %d ports: connect() takes every other one of the %d of ip_local_port_range first", p.Clients, (ports+1)/2, ports)
	for _, nr := range natRules(sc) {
		r := nr.Rule
		text := nr.Host + ": " + strings.Join(append([]string{"-t", r.Table, r.Op, r.Chain}, r.Spec...), " ")
		for i, a := range r.Spec {
			switch {
			case a == "--to-source" && i+1 < len(r.Spec) && r.Table == "nat":
				m := toSource.FindStringSubmatch(r.Spec[i+1])
				if m == nil {
					continue
				}
				addrs := 1
				if m[2] != "" {
					lo, err1 := netip.ParseAddr(m[1])
					hi, err2 := netip.ParseAddr(m[2])
					if err1 == nil && err2 == nil && lo.Is4() && hi.Is4() {
						a, b := lo.As4(), hi.As4()
						addrs = int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) -
							int(uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3])) + 1
					}
				}
				ports := 65535 - 1024 + 1 // nf_nat's default for a source port above 1023
				if m[3] != "" {
					lo, _ := strconv.Atoi(m[3])
					hi := lo
					if m[4] != "" {
						hi, _ = strconv.Atoi(m[4])
					}
					ports = hi - lo + 1
				}
				// nf_nat picks a pool address by a hash of the client's
				// and the server's addresses: k client addresses land on
				// n(1-(1-1/n)^k) of the n pool addresses on average.
				n, k := float64(max(1, addrs)), float64(p.Clients)
				used := n * (1 - math.Pow(1-1/n, k))
				variance := n*(n-1)*math.Pow(1-2/n, k) + n*math.Pow(1-1/n, k) - n*n*math.Pow(1-1/n, 2*k)
				sd := math.Sqrt(max(variance, 0))
				p.SNAT, p.Tuples = text, int(math.Round(used*float64(ports)))
				p.TuplesLow = int(math.Round(max(1, used-2*sd) * float64(ports)))
				p.TuplesHigh = int(math.Round(min(n, used+2*sd) * float64(ports)))
				p.Explain = fmt.Sprintf("the SNAT pool: %d address(es) × %d ports", max(1, addrs), ports)
				if addrs > 1 {
					p.Explain += fmt.Sprintf(", of which %d client address(es) use %.1f on average (the NAT hashes the client's address to pick one)", p.Clients, used)
				}
			case a == "TCPOPTSTRIP":
				for j := i; j+1 < len(r.Spec); j++ {
					if r.Spec[j] == "--strip-options" && strings.Contains(r.Spec[j+1], "timestamp") {
						p.Stripped, p.Timestamps = text, false
					}
				}
			}
		}
	}
	for _, h := range []string{host, sc.Server.Host} {
		if v := o.Sysctls[h][tcpmodel.KeyTimestamps]; v == "0" {
			p.Timestamps = false
		}
	}
	if p.TuplesLow == 0 {
		p.TuplesLow, p.TuplesHigh = p.Tuples, p.Tuples
	}
	return p
}

// reuse is the model's view of SYNs on a server TIME_WAIT for this path.
func (p Path) reuse() tcpmodel.Reuse {
	return tcpmodel.Reuse{Translated: p.SNAT != "", Timestamps: p.Timestamps, Clocks: p.Clients}
}

func stepNamed(sc *scenarios.Scenario, name string) *scenarios.Step {
	for _, st := range sc.Timeline {
		if st != nil && st.Name == name {
			return st
		}
	}
	return nil
}

func joinFails(fails []string) string { return strings.Join(fails, "; ") }

// HasBurst says whether the scenario has a burst step, whose captures the
// TIME_WAIT analysis reads.
func HasBurst(sc *scenarios.Scenario) bool {
	for _, st := range sc.Timeline {
		if st != nil && st.Kind == "burst" {
			return true
		}
	}
	return false
}

// AnalyzeTimeWaits runs the streaming TIME_WAIT analysis over the captures
// of a scenario with a burst, paths by host.
func (o *Observations) AnalyzeTimeWaits(paths map[string]string) error {
	if !HasBurst(o.Scenario) {
		return nil
	}
	if o.TimeWait == nil {
		o.TimeWait = map[string]*capture.TimeWaitAnalysis{}
	}
	for _, host := range slices.Sorted(maps.Keys(paths)) {
		opt := capture.TimeWaitOptions{ServerPort: uint16(o.Scenario.Server.Port)}
		for _, nr := range natRules(o.Scenario) {
			if nr.Rule.Table == "nat" {
				opt.NATForget = o.conntrackTimeWait()
			}
		}
		a, err := capture.AnalyzeTimeWait(paths[host], opt)
		if err != nil {
			return fmt.Errorf("TIME_WAIT analysis of %s: %w", host, err)
		}
		o.TimeWait[host] = a
	}
	return nil
}

// validateBurst refuses a Lab B check whose step is not a burst, and
// returns the host the check reads (default the server).
func validateBurst(v *scenarios.Validator, path string, c *scenarios.Check) string {
	if st, _ := v.Step(c.Step); st != nil && st.Kind != "burst" {
		v.Add(path+".step", "%s judges a burst step's connections, not a %s step", c.Type, st.Kind)
	}
	if c.Host != "" {
		return c.Host
	}
	return v.Scenario().Server.Host
}

// burstCapture is burstOf with the TIME_WAIT analysis of the capture the
// check reads (host, default the server's).
func (o *Observations) burstCapture(c *scenarios.Check, out *reports.Check) (*scenarios.Step, *actions.Burst, *client.BurstResult, *capture.TimeWaitAnalysis, bool) {
	st, b, res, ok := o.burstOf(c, out)
	if !ok {
		return nil, nil, nil, nil, false
	}
	host := c.Host
	if host == "" {
		host = o.Scenario.Server.Host
	}
	a, ok := o.timeWait(host, out)
	return st, b, res, a, ok
}
