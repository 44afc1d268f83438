package tcpmodel

import (
	"fmt"
	"time"
)

// SessionEnd is when a server ends a session whose client vanished while
// the session was idle (no FIN, no RST, nothing in flight), counted from
// the last segment the server received, which is when it began to wait
// for the next command.
type SessionEnd struct {
	// After is the time from the last segment received to the end.
	After time.Duration
	// By names what ends it: "keepalive" or "wait_timeout".
	By      string
	Explain string
	// Keepalive is the keepalive schedule when the server's sockets use
	// keepalive; its probes are part of the ending when By is keepalive.
	Keepalive *Schedule
}

// IdleSession predicts the end of an idle session on the server: TCP
// keepalive gives up tcp_keepalive_time + probes × intvl after the last
// segment received (include/net/tcp.h keepalive_time_elapsed, counted from
// icsk_ack.lrcvtime; tcp_keepalive_timer resets the connection once
// probes_out reaches tcp_keepalive_probes), if the server set SO_KEEPALIVE
// on the socket; the server's own wait_timeout ends the session when its
// read for the next command times out. Whichever comes first wins; at a
// tie keepalive is named, its timer being the kernel's. waitTimeout 0 means
// the server has none.
func IdleSession(s Sysctls, keepalive bool, waitTimeout time.Duration) SessionEnd {
	var out SessionEnd
	var ka Schedule
	if keepalive {
		ka = Keepalive(s)
		out.Keepalive = &ka
	}
	switch {
	case keepalive && (waitTimeout == 0 || ka.GiveUp <= waitTimeout):
		out.After, out.By = ka.GiveUp, "keepalive"
		out.Explain = fmt.Sprintf("TCP keepalive ends the session %s after the last segment the server received, before wait_timeout (%s): %s", fmtDur(ka.GiveUp), waitText(waitTimeout), ka.Explain)
	case waitTimeout > 0:
		out.After, out.By = waitTimeout, "wait_timeout"
		ka := "the server's sockets have no keepalive"
		if keepalive {
			ka = fmt.Sprintf("before TCP keepalive would (%s)", fmtDur(out.Keepalive.GiveUp))
		}
		out.Explain = fmt.Sprintf("wait_timeout=%s ends the idle session when the server's read for the next command times out, %s.", fmtDur(waitTimeout), ka)
	default:
		out.Explain = "nothing ends the session: no keepalive on the server's socket and no wait_timeout"
	}
	return out
}

func waitText(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return fmtDur(d)
}
