package checks

import (
	"fmt"
	"strings"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:     "late_reply",
			Doc:      "The server's answer to the step's last MySQL request comes when the disk freeze in force ends (the thaw), and, when the client's read timeout is the shorter, after the client closed: the client's kernel answers it with RST. The model reads the freeze step's time and the client's read_timeout; expect.after names the freeze when several overlap.",
			Expect:   []string{"after", "tolerance"},
			Step:     scenarios.StepConnection,
			Validate: validateStallExpect,
		},
		Plan: planStall,
		Eval: checkLateReply,
	})
}

func checkLateReply(o *Observations, c *scenarios.Check, out *reports.Check) {
	sr, m, why, obs, ok := o.stalled(c, out)
	if !ok {
		return
	}
	reply := sr.conn.ReplyTo(sr.req)
	if reply != nil {
		obs["reply"] = replyName(reply)
		obs["reply_s"] = o.sec(reply.Time)
		obs["reply_after_request_s"] = round3(reply.Time.Sub(sr.msg.Time).Seconds())
		out.Evidence = append(out.Evidence, fmt.Sprintf("%s.pcap frame %d server reply %s at %s, %.3fs after the request", sr.host, reply.Frame, replyName(reply), o.offset(reply.Time), reply.Time.Sub(sr.msg.Time).Seconds()))
	}
	fin := clientFIN(sr)
	if fin != nil {
		obs["client_fin_s"] = o.sec(fin.Time)
		out.Evidence = append(out.Evidence, o.evidence(sr.host, []capture.Packet{*fin}, "client FIN")...)
	}
	var rsts []capture.Packet
	if reply != nil {
		for _, p := range sr.f.RSTs(sr.f.Client) {
			if !p.Time.Before(reply.Time) {
				rsts = append(rsts, p)
			}
		}
		obs["client_rsts_after_reply"] = len(rsts)
		out.Evidence = append(out.Evidence, o.evidence(sr.host, rsts, "client RST")...)
	}
	if m == nil {
		out.Message = "no model: " + why
		return
	}
	tol := stallTolerance(c, m.remaining, o.Slow)
	out.Explain = m.explain
	when := "reply_s"
	if m.bound {
		when = "reply_s_at_most"
	}
	out.Expected = map[string]any{when: o.sec(m.until), "after_client_fin": m.giveUp, "client_rsts_after_reply": map[bool]string{true: "1 or more", false: "0"}[m.giveUp]}
	out.Tolerance = map[string]any{when: round3(tol.Seconds())}
	var bad []string
	if reply == nil {
		out.Message = fmt.Sprintf("the server never answered the %s of frame %d in %s.pcap%s", sr.msg.Command, sr.msg.Frame, sr.host, lostNote(sr.conn))
		return
	}
	d := reply.Time.Sub(m.until)
	if !m.earliest.IsZero() {
		out.Expected.(map[string]any)["reply_s_at_least"] = o.sec(m.earliest)
	}
	switch {
	case !m.earliest.IsZero() && reply.Time.Before(m.earliest.Add(-tol)):
		bad = append(bad, fmt.Sprintf("the reply came at %s, before one delayed call could finish, %s", o.offset(reply.Time), o.offset(m.earliest)))
	case m.bound && d > tol:
		bad = append(bad, fmt.Sprintf("the reply came at %s, after the end of the %s, %s + %.3fs", o.offset(reply.Time), m.rec.Kind, o.offset(m.until), tol.Seconds()))
	case !m.bound && (d > tol || -d > tol):
		bad = append(bad, fmt.Sprintf("the reply came at %s, expected at the thaw, %s ± %.3fs", o.offset(reply.Time), o.offset(m.until), tol.Seconds()))
	}
	after := fin != nil && fin.Time.Before(reply.Time)
	obs["after_client_fin"] = after
	switch {
	case m.giveUp && !after:
		bad = append(bad, "the reply came before the client closed, though its read timeout was the shorter")
	case m.giveUp && len(rsts) == 0:
		bad = append(bad, "the client's kernel sent no RST after the reply reached the closed connection")
	case !m.giveUp && after:
		bad = append(bad, "the client closed before the reply, though its read timeout was the longer")
	case !m.giveUp && len(rsts) > 0:
		bad = append(bad, fmt.Sprintf("the client reset the connection %d times, though it waited for the reply", len(rsts)))
	}
	out.Passed = len(bad) == 0
	out.Message = strings.Join(bad, "; ")
	if out.Passed {
		docFinding(c, out, reply.Time.Sub(sr.msg.Time), "reply after the request")
	}
}

// replyName names a server message: "OK", "ERR 1062", "result set (1 rows)".
func replyName(m *capture.MySQLMessage) string {
	switch m.Kind {
	case "ok":
		return "OK"
	case "err":
		return fmt.Sprintf("ERR %d", m.Code)
	case "result_set":
		return fmt.Sprintf("result set (%d rows)", m.Rows)
	}
	return m.Kind
}

// docFinding notes a documented time that differs from the observed one
// by more than an eighth: the scenario's own parameters differ from the
// article's, which the model explains.
func docFinding(c *scenarios.Check, out *reports.Check, got time.Duration, what string) {
	v, ok := asNumber(docValue(c))
	if !ok || v <= 0 {
		return
	}
	if d := got.Seconds() - v; d > v/8 || -d > v/8 {
		out.Finding = fmt.Sprintf("the article's %s was %.3gs; here %.3fs, from this scenario's own stall and read timeout", what, v, got.Seconds())
	}
}
