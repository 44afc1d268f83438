package checks

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// DefaultWaitTimeout is wait_timeout's default in MySQL and MariaDB, in
// seconds (8 h).
const DefaultWaitTimeout = 28800

// Lock wait timeouts' defaults in MySQL and MariaDB, in seconds: a row
// lock (InnoDB) and a metadata lock (FLUSH TABLES WITH READ LOCK, DDL).
const (
	DefaultInnodbLockWaitTimeout = 50
	DefaultLockWaitTimeout       = 31536000
)

// setSession matches "SET SESSION name = N" and "SET name = N" (the
// session's value), as a step's statements write it.
var setSession = regexp.MustCompile(`(?i)^\s*SET\s+(?:SESSION\s+|@@SESSION\.|LOCAL\s+)?([a-z_]+)\s*=\s*([0-9.]+)\s*;?\s*$`)

// lockWait is how long a statement waits for a lock before ERROR 1205:
// the variable the model names, as the step's own statements set it for
// their session, else the server's variable, else its default.
func lockWait(variable string, sc *scenarios.Scenario, sql []string) (time.Duration, string) {
	for i := len(sql) - 1; i >= 0; i-- {
		if m := setSession.FindStringSubmatch(sql[i]); m != nil && strings.EqualFold(m[1], variable) {
			if n, err := strconv.ParseFloat(m[2], 64); err == nil {
				return time.Duration(n * float64(time.Second)), fmt.Sprintf("%s=%s (the step's SET SESSION): a statement waiting for the lock gives up with ERROR 1205 after that long", variable, m[2])
			}
		}
	}
	def := DefaultInnodbLockWaitTimeout
	if variable == "lock_wait_timeout" {
		def = DefaultLockWaitTimeout
	}
	d, explain := serverSeconds(sc.Server.Variables, variable, def)
	return d, explain + ": a statement waiting for the lock gives up with ERROR 1205 after that long"
}

// stepSQL is a client step's statements as the scenario writes them.
func stepSQL(sc *scenarios.Scenario, step string) []string {
	for _, st := range sc.Timeline {
		if st != nil && st.Name == step {
			if c, ok := actions.ClientOf(st); ok {
				return c.SQL
			}
		}
	}
	return nil
}

// serverKeepalive says which flavors set SO_KEEPALIVE on their client
// sockets. Both do (measured on Oracle MySQL 9.7 and MariaDB 10.11: ss
// shows timer:(keepalive,...) on an idle session), although the Lab C
// article says MySQL does not.
var serverKeepalive = map[string]bool{"mysql": true, "mariadb": true}

// idleSession predicts the end of the idle session a step left open on the
// server when its client vanished: keepalive on the server's host or the
// server's wait_timeout, whichever comes first, from the end of the step
// (the server's last reply, after which it waits for the next command).
func idleSession(sys tcpmodel.Sysctls, flavor string, vars map[string]string) tcpmodel.SessionEnd {
	wt, _ := serverSeconds(vars, "wait_timeout", DefaultWaitTimeout)
	return tcpmodel.IdleSession(sys, serverKeepalive[flavor], wt)
}

// sessionEnd is when the session of step res ends by the model, with the
// tolerance of its timer plus the sampling period every.
func (o *Observations) sessionEnd(res *Step, every time.Duration) *until {
	m := idleSession(o.Sysctls[o.Scenario.Server.Host], o.Flavor, o.Scenario.Server.Variables)
	if m.By == "" {
		return &until{explain: m.Explain}
	}
	return &until{at: res.End.Add(m.After), tol: tcpmodel.Tolerance(m.After, 200*time.Millisecond, o.Slow) + every,
		explain: fmt.Sprintf("step %s ended at %s: %s", res.Name, o.offset(res.End), m.Explain)}
}

// planSessionEnd is the model's ending of a step's idle session, before
// anything runs: how long after the step it comes.
func planSessionEnd(p *PlanEnv, step string) (map[string]any, string) {
	m := idleSession(p.Sysctls(p.Scenario.Server.Host), p.Scenario.Server.Flavor, p.Scenario.Server.Variables)
	if m.By == "" {
		return nil, m.Explain
	}
	return map[string]any{"gone_after_step_s": round3(m.After.Seconds()), "by": m.By}, m.Explain
}

// processlistEvery is the processlist sampling period.
func (o *Observations) processlistEvery() time.Duration {
	if pl := o.Scenario.Observe.Processlist; pl != nil && pl.Every > 0 {
		return pl.Every.D()
	}
	return scenarios.DefaultProcesslistEvery.D()
}

// stateUntil is the end the model gives a state check's state: for
// model session_end, when the idle session of the check's step ends.
// ok is false, with the reason in out, when the model cannot say.
func (o *Observations) stateUntil(c *scenarios.Check, res *Step, every time.Duration, out *reports.Check) (u *until, ok bool) {
	if c.Expect.Model != "session_end" {
		return nil, true
	}
	if u = o.sessionEnd(res, every); u.at.IsZero() {
		out.Message = u.explain
		return nil, false
	}
	return u, true
}

// planStateModel is the plan of a state check: the end of the idle
// session for model session_end, nothing otherwise.
func planStateModel(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
	if c.Expect.Model != "session_end" {
		return nil, ""
	}
	return planSessionEnd(p, c.Step)
}
