package checks

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// tcpStates are the kernel's names (include/net/tcp_states.h) without the
// TCP_ prefix, as sock_diag reports them.
var tcpStates = []string{"CLOSE", "CLOSE_WAIT", "CLOSING", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
	"LAST_ACK", "LISTEN", "NEW_SYN_RECV", "SYN_RECV", "SYN_SENT", "TIME_WAIT"}

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:     "socket_state",
			Doc:      "Sockets of the step's client address in a host's sock_diag samples (observe.sockets): expect.state (a TCP state), for, gone; model synack: a SYN_RECV lasts as long as tcpmodel.SYNACK keeps the request; model session_end: the server's ESTABLISHED socket of an idle session whose client vanished goes when keepalive or wait_timeout ends the session.",
			Expect:   []string{"for", "gone", "model", "tolerance"},
			Required: []string{"state"},
			Models:   []string{"session_end", "synack"},
			Step:     scenarios.StepConnection,
			ExpectSchema: map[string]map[string]any{
				"state": {"enum": tcpStates},
			},
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				if c.Expect != nil && c.Expect.State != "" && !contains(tcpStates, c.Expect.State) {
					v.Add(path+".expect.state", "unknown TCP state %q (known: %s)", c.Expect.State, joinList(tcpStates))
				}
				host := c.Host
				if host == "" {
					if st, _ := v.Step(c.Step); st != nil {
						host = st.Host
					}
				}
				sampled := false
				for _, s := range v.Scenario().Observe.Sockets {
					sampled = sampled || s.Host == host
				}
				if host != "" && !sampled {
					v.Add(path+".host", "socket_state reads sock_diag samples of host %s: add it to observe.sockets", host)
				}
				if c.Expect != nil && c.Expect.Model == "session_end" && c.Host != v.Scenario().Server.Host {
					v.Add(path+".host", "model session_end is about the server's socket: host must be %s", v.Scenario().Server.Host)
				}
			},
		},
		Eval: checkSocketState,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			switch c.Expect.Model {
			case "synack":
				m := tcpmodel.SYNACK(p.Sysctls(p.Scenario.Server.Host))
				return map[string]any{"state": c.Expect.State, "for_s": round3(m.GiveUp.Seconds())}, m.Explain
			}
			return planStateModel(p, c)
		},
	})
}

// checkSocketState follows the sockets of the step's client address in
// the sock_diag samples of a host (the check's, else the step's).
func checkSocketState(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, ok := o.clientStep(c, out)
	if !ok {
		return
	}
	host := c.Host
	if host == "" {
		host = res.Host
	}
	exp := c.Expect
	cl := o.Addresses[res.Host]
	var sp span
	var ev []string
	for _, s := range o.Sockets {
		if s.Host != host {
			continue
		}
		has := false
		for _, sk := range s.Sockets {
			if (sk.Local.Addr() == cl || sk.Remote.Addr() == cl) && sk.State == exp.State && o.ofStep(res, sk.Local, sk.Remote) {
				has = true
				if len(ev) < 3 {
					ev = append(ev, fmt.Sprintf("sock_diag on %s at %s: %s %s -> %s", host, o.offset(s.Time), sk.State, sk.Local, sk.Remote))
				}
			}
		}
		sp.see(s.Time, has, s.Error)
	}
	every := o.every(host)
	var u *until
	switch exp.Model {
	case "session_end":
		var ok bool
		if u, ok = o.stateUntil(c, res, every, out); !ok {
			return
		}
	case "synack":
		// The state lasts as long as the server keeps the request: the
		// SYN-ACK schedule's give-up time from when the state was first
		// seen, within the timing tolerance plus one sampling period.
		m := tcpmodel.SYNACK(o.Sysctls[o.Scenario.Server.Host])
		floor := 200 * time.Millisecond
		if exp.Tolerance > 0 {
			floor = exp.Tolerance.D()
		}
		if sp.n > 0 {
			u = &until{at: sp.first.Add(m.GiveUp), tol: tcpmodel.Tolerance(m.GiveUp, floor, o.Slow) + every, explain: m.Explain}
		}
	}
	out.Evidence = ev
	o.judge(fmt.Sprintf("socket of %s", cl), "sock_diag on "+host, exp, sp, u, nil, out)
	if exp.Model == "synack" && sp.n > 0 {
		want := out.Expected.(map[string]any)
		want["for_s"] = round3(tcpmodel.SYNACK(o.Sysctls[o.Scenario.Server.Host]).GiveUp.Seconds())
	}
}

// ofStep tells whether a socket belongs to the step's connection: by the
// client's address and port when the step knows it, else any socket of
// the client's address.
func (o *Observations) ofStep(res *Step, local, remote netip.AddrPort) bool {
	if res.Client == nil || res.Client.Local == "" {
		return true
	}
	return local.String() == res.Client.Local || remote.String() == res.Client.Local
}
