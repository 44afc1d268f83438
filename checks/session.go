package checks

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// DefaultWaitTimeout is wait_timeout's default in MySQL and MariaDB, in
// seconds (8 h).
const DefaultWaitTimeout = 28800

// DefaultLockWaitTimeout is innodb_lock_wait_timeout's default in MySQL
// and MariaDB, in seconds.
const DefaultLockWaitTimeout = 50

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
