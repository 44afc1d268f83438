package runner

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/tcpmodel"
)

// PlannedCheck is what the kernel model predicts for one check before
// anything runs.
type PlannedCheck struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Documented *Documented `json:"documented,omitempty"`
	// Expected is the model's prediction; empty for checks that only
	// observe (a thread state, a row value).
	Expected map[string]any `json:"expected,omitempty"`
	Explain  string         `json:"explain,omitempty"`
}

// Plan computes the model's expectations for a scenario's checks from its
// sysctls laid over the kernel's defaults, without creating anything. It
// is how a scenario too long to run (the article's 2-hour keepalive) still
// shows what this kernel would do. A namespace starts with the kernel's
// defaults, which Defaults gives; keys the running kernel lacks are
// treated as the model treats them.
func Plan(sc *Scenario) []PlannedCheck {
	sys := func(host string) tcpmodel.Sysctls {
		s := tcpmodel.Defaults()
		if h := sc.Hosts[host]; h != nil {
			for k, v := range h.Sysctls {
				s[k] = v
			}
		}
		return s
	}
	stepHost := map[string]string{}
	for _, st := range sc.Timeline {
		stepHost[st.Name] = st.Host
	}
	var out []PlannedCheck
	for _, c := range sc.Checks {
		p := PlannedCheck{Name: c.Name, Type: c.Type, Documented: c.Documented}
		client := stepHost[c.Step]
		prober := client
		if c.Host != "" && c.Host == sc.Server.Host {
			prober = sc.Server.Host
		}
		schedule := func(m tcpmodel.Schedule, what string) {
			p.Expected = map[string]any{"count": m.Count, "intervals_s": seconds(m.Intervals), what: round3(m.GiveUp.Seconds())}
			p.Explain = m.Explain
		}
		switch c.Type {
		case "syn_retransmits":
			schedule(tcpmodel.SYN(sys(client)), "gives_up_s")
		case "synack_retransmits":
			schedule(tcpmodel.SYNACK(sys(sc.Server.Host)), "request_dropped_s")
		case "data_retransmits":
			schedule(tcpmodel.Data(sys(prober), 0), "gives_up_s")
		case "keepalive_probes":
			m := tcpmodel.Keepalive(sys(prober))
			schedule(m, "reset_s")
			p.Expected["reset_after"] = time.Duration(m.GiveUp).Round(time.Second).String()
		case "client_error":
			if c.Expect != nil && c.Expect.Model != "" {
				var m tcpmodel.Schedule
				switch c.Expect.Model {
				case "syn":
					m = tcpmodel.SYN(sys(client))
				case "keepalive":
					m = tcpmodel.Keepalive(sys(client))
				case "data":
					m = tcpmodel.Data(sys(client), 0)
				}
				p.Expected = map[string]any{"elapsed_s": round3(m.GiveUp.Seconds())}
				p.Explain = m.Explain
			}
		case "iptables_counter":
			if c.Expect != nil && c.Expect.Model == "syn" {
				m := tcpmodel.SYN(sys(client))
				p.Expected = map[string]any{"packets": m.Count + 1}
				p.Explain = "the first SYN plus " + m.Explain
			}
		case "socket_state":
			if c.Expect != nil && c.Expect.Model == "synack" {
				m := tcpmodel.SYNACK(sys(sc.Server.Host))
				p.Expected = map[string]any{"state": c.Expect.State, "for_s": round3(m.GiveUp.Seconds())}
				p.Explain = m.Explain
			}
		}
		if p.Expected == nil {
			p.Explain = fmt.Sprintf("%s is observed, not modelled: run the scenario", c.Type)
		}
		out = append(out, p)
	}
	return out
}
