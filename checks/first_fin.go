package checks

import (
	"cmp"
	"fmt"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name: "first_fin",
			Doc: "Which side of a burst's connections sends the first FIN, in host's capture (default the server's): the server after COM_QUIT (close quit), either for long (a race, at most one per long connection), the client for close fin, nobody for close rst (a reset); " +
				"every connection that closed, and for quit every COM_QUIT followed by the server's FIN.",
			Step: scenarios.StepAny,
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				validateBurst(v, path, c)
			},
		},
		Eval: checkFirstFIN,
		Plan: planFirstFIN,
	})
}

func checkFirstFIN(o *Observations, c *scenarios.Check, out *reports.Check) {
	_, b, res, a, ok := o.burstCapture(c, out)
	if !ok {
		return
	}
	host := cmp.Or(c.Host, o.Scenario.Server.Host)
	closed := a.FirstFIN.Server + a.FirstFIN.Client
	out.Observed = map[string]any{"server_first": a.FirstFIN.Server, "client_first": a.FirstFIN.Client, "reset": a.ClosedByRST,
		"not_closed": a.NotClosed, "quits": a.Quits, "quit_then_server_fin": a.QuitThenServerFIN}
	out.Tolerance = "exact"
	out.Evidence = append(out.Evidence, fmt.Sprintf("%s.pcap: %s", host, a))
	var fails []string
	switch mode := b.CloseMode(); mode {
	case client.CloseLong:
		out.Expected = map[string]any{"closed": fmt.Sprintf("the %d long connections, either side first (at most twice as many conversations)", res.Connected)}
		out.Explain = "the long connections close at the end with COM_QUIT and an immediate close: a race for the first FIN. When both sides close at once behind a NAT that forgets a connection as soon as it closes, the last segments pass untranslated and the capture shows a second conversation"
		if closed > 2*res.Connected {
			fails = append(fails, fmt.Sprintf("%d conversations closed, more than twice the %d long connections opened", closed, res.Connected))
		}
	case client.CloseQuit:
		out.Expected = map[string]any{"server_first": closed, "client_first": 0, "quit_then_server_fin": a.Quits}
		out.Explain = "after COM_QUIT the server ends the session and closes its socket first; the client waits for that FIN (quit) or holds its long connections to the end"
		if a.FirstFIN.Client > 0 {
			fails = append(fails, fmt.Sprintf("the client sent the first FIN on %d connections", a.FirstFIN.Client))
		}
		if a.QuitThenServerFIN != a.Quits {
			fails = append(fails, fmt.Sprintf("%d of %d COM_QUITs were followed by the server's FIN first", a.QuitThenServerFIN, a.Quits))
		}
		if a.Quits == 0 {
			fails = append(fails, "no COM_QUIT in the capture")
		}
	case client.CloseFIN:
		out.Expected = map[string]any{"server_first": 0, "client_first": closed, "quits": 0}
		out.Explain = "the client closes its socket without COM_QUIT: its FIN comes first"
		if a.FirstFIN.Server > 0 || a.Quits > 0 {
			fails = append(fails, fmt.Sprintf("the server sent the first FIN on %d connections, %d COM_QUITs", a.FirstFIN.Server, a.Quits))
		}
	case client.CloseRST:
		out.Expected = map[string]any{"server_first": 0, "client_first": 0, "reset": "every connection"}
		out.Explain = "SO_LINGER 0: the client's close sends a RST and no FIN"
		if closed > 0 {
			fails = append(fails, fmt.Sprintf("%d connections closed with FINs", closed))
		}
		if a.ClosedByRST == 0 {
			fails = append(fails, "no connection was reset")
		}
		closed = a.ClosedByRST
	default:
		out.Message = fmt.Sprintf("close %s: who sends the first FIN is a race the model cannot call", mode)
		return
	}
	if closed == 0 {
		fails = append(fails, "no connection closed in the capture")
	}
	out.Passed = len(fails) == 0
	if !out.Passed {
		out.Message = joinFails(fails)
	}
}
