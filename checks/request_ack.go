package checks

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "request_ack",
			Doc:    "The step's last MySQL request (decoded from the capture) is acknowledged by the server's kernel with a bare ACK, no result with it, within the delayed-ACK bound (TCP_DELACK_MAX, 200 ms): the server received the statement, and the statement itself is what waits.",
			Expect: []string{"tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkRequestACK,
		Plan: func(*PlanEnv, *scenarios.Check) (map[string]any, string) {
			return map[string]any{"bare_ack_within_ms": tcpmodel.DelayedACKMax.Milliseconds()}, ackExplain
		},
	})
}

const ackExplain = "A receiver with data to acknowledge and nothing to send answers with a bare ACK within TCP_DELACK_MAX (200 ms); a server whose statement waits has nothing to send."

func checkRequestACK(o *Observations, c *scenarios.Check, out *reports.Check) {
	sr, ok := o.request(c, out)
	if !ok {
		return
	}
	bound := tcpmodel.DelayedACKMax
	// The bound already is the timer's longest wait; only the lateness of
	// timers is added, or the scenario's own floor.
	var floor time.Duration
	if c.Expect != nil {
		floor = c.Expect.Tolerance.D()
	}
	tol := tcpmodel.Tolerance(bound, floor, o.Slow)
	out.Expected = map[string]any{"bare_ack_within_ms": bound.Milliseconds(), "result_with_ack": false}
	out.Tolerance = map[string]any{"ms": tol.Milliseconds()}
	out.Explain = ackExplain
	obs := map[string]any{"request": sr.msg.Command, "request_s": o.sec(sr.msg.Time)}
	out.Observed = obs
	out.Evidence = o.evidence(sr.host, []capture.Packet{sr.seg}, "request "+sr.msg.Command)
	var ack *capture.Packet
	for _, p := range sr.f.From(sr.f.Server) {
		if p.ACK && !p.Time.Before(sr.seg.Time) && !ltSeq(p.Ack, sr.seg.NextSeq()) {
			ack = &p
			break
		}
	}
	if ack == nil {
		out.Message = fmt.Sprintf("the server never acknowledged the request (frame %d) in %s.pcap", sr.seg.Frame, sr.host)
		return
	}
	d := ack.Time.Sub(sr.seg.Time)
	obs["ack_ms"] = round3(float64(d.Microseconds()) / 1000)
	obs["ack_frame"] = ack.Frame
	bare := ack.Payload == 0 && !ack.FIN && !ack.RST
	obs["result_with_ack"] = !bare
	out.Evidence = append(out.Evidence, o.evidence(sr.host, []capture.Packet{*ack}, fmt.Sprintf("server ACK [%s] len %d after %.1f ms", ack.Flags(), ack.Payload, float64(d.Microseconds())/1000))...)
	switch {
	case !bare:
		out.Message = fmt.Sprintf("the first segment acknowledging the request carries [%s] len %d: the server answered at once, nothing waited", ack.Flags(), ack.Payload)
	case d > bound+tol:
		out.Message = fmt.Sprintf("the bare ACK came %.1f ms after the request, more than %d ms + %d ms", float64(d.Microseconds())/1000, bound.Milliseconds(), tol.Milliseconds())
	default:
		out.Passed = true
	}
}

// ltSeq compares sequence numbers modulo 2^32.
func ltSeq(a, b uint32) bool { return int32(a-b) < 0 }
