package checks

import (
	"fmt"
	"strings"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:     "client_close",
			Doc:      "How the client ends a connection whose request waits on a disk freeze: when its read timeout is the shorter, it closes at the request plus read_timeout, and go-sql-driver closes without COM_QUIT after a read error; when the result comes in time, the connection stays open for it. The model reads the freeze step's time and the client's read_timeout.",
			Expect:   []string{"after", "tolerance"},
			Step:     scenarios.StepConnection,
			Validate: validateStallExpect,
		},
		Plan: planStall,
		Eval: checkClientClose,
	})
}

// quitAfterReadError says whether a client kind sends COM_QUIT before
// closing a connection on which a read failed. go-sql-driver v1.10's
// readPacket calls mc.close() on a read error: the socket is closed
// without COM_QUIT; only Close() on a healthy connection sends one. The
// article's capture shows a "Request Quit", so its driver was older or
// closed differently.
var quitAfterReadError = map[string]bool{"go": false}

func checkClientClose(o *Observations, c *scenarios.Check, out *reports.Check) {
	sr, m, why, obs, ok := o.stalled(c, out)
	if !ok {
		return
	}
	fin := clientFIN(sr)
	var quit *capture.MySQLMessage
	for i := sr.req + 1; i < len(sr.conn.Messages); i++ {
		if mm := sr.conn.Messages[i]; mm.FromClient && mm.Command == "COM_QUIT" {
			quit = &sr.conn.Messages[i]
			break
		}
	}
	obs["com_quit"] = quit != nil
	if quit != nil {
		out.Evidence = append(out.Evidence, fmt.Sprintf("%s.pcap frame %d COM_QUIT at %s", sr.host, quit.Frame, o.offset(quit.Time)))
	}
	if fin != nil {
		obs["client_fin_s"] = o.sec(fin.Time)
		obs["fin_after_request_s"] = round3(fin.Time.Sub(sr.msg.Time).Seconds())
		out.Evidence = append(out.Evidence, o.evidence(sr.host, []capture.Packet{*fin}, "client FIN")...)
	}
	reply := sr.conn.ReplyTo(sr.req)
	if m == nil {
		out.Message = "no model: " + why
		return
	}
	out.Explain = m.explain
	kind := sr.res.Client.Kind
	var bad []string
	if m.giveUp {
		tol := stallTolerance(c, m.readTimeout, o.Slow)
		wantQuit, known := quitAfterReadError[kind]
		exp := map[string]any{"fin_after_request_s": round3(m.readTimeout.Seconds())}
		if known {
			exp["com_quit"] = wantQuit
			out.Explain += fmt.Sprintf(" After a read error the %s client closes %s COM_QUIT (go-sql-driver v1.10: readPacket calls mc.close()).", kind, map[bool]string{true: "with", false: "without"}[wantQuit])
		}
		out.Expected = exp
		out.Tolerance = map[string]any{"fin_after_request_s": round3(tol.Seconds())}
		switch {
		case fin == nil:
			bad = append(bad, fmt.Sprintf("the client never closed the connection in %s.pcap", sr.host))
		default:
			if d := fin.Time.Sub(sr.msg.Time) - m.readTimeout; d > tol || -d > tol {
				bad = append(bad, fmt.Sprintf("the client closed %.3fs after the request, expected its read timeout, %.3fs ± %.3fs", fin.Time.Sub(sr.msg.Time).Seconds(), m.readTimeout.Seconds(), tol.Seconds()))
			}
			if reply != nil && reply.Time.Before(fin.Time) {
				bad = append(bad, "the reply came before the client closed")
			}
		}
		if known && (quit != nil) != wantQuit {
			bad = append(bad, fmt.Sprintf("COM_QUIT %s, expected %s for the %s client", map[bool]string{true: "sent", false: "not sent"}[quit != nil], map[bool]string{true: "sent", false: "not sent"}[wantQuit], kind))
		}
	} else {
		out.Expected = map[string]any{"closed_before_reply": false}
		obs["closed_before_reply"] = fin != nil && (reply == nil || fin.Time.Before(reply.Time))
		if obs["closed_before_reply"] == true {
			bad = append(bad, "the client closed before the reply, though its read timeout was the longer")
		}
		if reply == nil {
			bad = append(bad, "the server never answered the request")
		}
	}
	out.Passed = len(bad) == 0
	out.Message = strings.Join(bad, "; ")
	if out.Passed && c.Documented != nil && m.giveUp {
		if s, ok := c.Documented.Value.(string); ok && strings.Contains(strings.ToLower(s), "quit") && quit == nil {
			out.Finding = fmt.Sprintf("the article's client sent COM_QUIT (%q) before closing; this %s client (go-sql-driver v1.10) closed without it after the read timeout", s, kind)
		}
	}
}
