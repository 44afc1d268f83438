package checks_test

import (
	"testing"
	"time"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/scenarios"
)

// Lab B's kinds on nat-strip-mysql: 200 short connections a second for
// 1.5 s through an SNAT pool of 100 ports that strips timestamps.
const (
	twCheck    = "the server, not the client, holds the TIME_WAITs, each for 60 s"
	finCheck   = "the server sends the first FIN after COM_QUIT"
	bareCheck  = "SYNs on a server TIME_WAIT get a bare ACK with the old sequence; the client resets it and resends"
	labBRun    = "nat-strip-mysql"
	labBServer = "server"
)

// burstClose rewrites the burst's close mode, as if the scenario had said
// it: the model moves, the packets do not.
func burstClose(mode string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		for _, st := range o.Scenario.Timeline {
			if b, ok := st.Action.(*actions.Burst); ok {
				b.Close = mode
				return
			}
		}
		t.Fatal("no burst step")
	}
}

// noCensus drops the socket census of a host.
func noCensus(host string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		for i, c := range o.Census {
			if c.Host == host {
				o.Census = append(o.Census[:i], o.Census[i+1:]...)
				return
			}
		}
		t.Fatalf("no census of %s", host)
	}
}

// noCapture drops a host's capture, as if it had not been captured.
func noCapture(host string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		if o.TimeWait[host] == nil {
			t.Fatalf("no TIME_WAIT analysis of %s", host)
		}
		delete(o.TimeWait, host)
	}
}

func init() {
	kindCases = append(kindCases,
		kindCase{name: "recorded", run: labBRun, check: twCheck},
		kindCase{name: "no census, nothing counted", run: labBRun, check: twCheck, alter: noCensus(labBServer),
			want: "no socket census of host server"},
		// With tcp_max_tw_buckets 0 the model holds none.
		kindCase{name: "buckets 0 moves the model", run: labBRun, check: twCheck, alter: sysctl(labBServer, "net.ipv4.tcp_max_tw_buckets", "0"),
			want: "expected 0"},
		kindCase{name: "client FIN first: the client would hold them", run: labBRun, check: twCheck, alter: burstClose("rst"),
			want: "server held at most"},
		kindCase{name: "quit-now is a race the model cannot call", run: labBRun, check: twCheck, alter: burstClose("quit-now"),
			want: "race"},

		kindCase{name: "recorded", run: labBRun, check: finCheck},
		kindCase{name: "close fin expects the client first", run: labBRun, check: finCheck, alter: burstClose("fin"),
			want: "the server sent the first FIN on"},
		kindCase{name: "no capture", run: labBRun, check: finCheck, alter: noCapture(labBServer),
			want: "no TIME_WAIT analysis of host server"},

		kindCase{name: "recorded", run: labBRun, check: bareCheck},
		// On a kernel with one timestamp offset per address pair, and the
		// strip rule gone, the model expects none.
		kindCase{name: "an older kernel without the strip expects none", run: labBRun, check: bareCheck,
			alter: func(t *testing.T, o *checks.Observations, c *scenarios.Check) {
				o.Kernel = "6.12.48"
				for _, st := range o.Scenario.Timeline {
					if st.Name == "strip" {
						st.Skip = true
					}
				}
			},
			want: "SYNs answered by a bare ACK, expected 0 to 2"},
		kindCase{name: "the article's kernel resends after 1 s", run: labBRun, check: bareCheck,
			alter: func(t *testing.T, o *checks.Observations, c *scenarios.Check) { o.Kernel = "4.15.0-36-generic" },
			want:  "after the first bare ACK, expected 1s"},
		kindCase{name: "no client capture: the cost is unobserved", run: labBRun, check: bareCheck, alter: noCapture("app"),
			want: "no capture on app"},
	)
}

// labrun plan predicts Lab B's figures from the scenario alone, and they
// move with its parameters.
func TestPlanLabB(t *testing.T) {
	tests := []struct {
		file, set string
		values    []string
		peak      []int
		rejected  float64
	}{
		{"nat-strip.yaml", "", nil, []int{67}, 0.5},
		{"direct.yaml", "", nil, []int{50}, 0},
		{"documented.yaml", "", nil, []int{37807}, 0.5},
		// The rate moves it: 50 connections drawing from 100 4-tuples leave
		// 38 (some draw one already in TIME_WAIT).
		{"nat-strip.yaml", "php.rate", []string{"5", "400"}, []int{38, 67}, 0.5},
		{"nat-strip.yaml", "server.net.ipv4.tcp_max_tw_buckets", []string{"0", "10"}, []int{0, 10}, 0.5},
	}
	for _, tt := range tests {
		sc, err := scenarios.Load("../scenarios/lab-b/" + tt.file)
		if err != nil {
			t.Fatal(err)
		}
		insts := []*scenarios.Scenario{sc}
		if tt.set != "" {
			if err := sc.SetAxis(tt.set, tt.values); err != nil {
				t.Fatal(err)
			}
			if insts, err = scenarios.Expand(sc, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		for i, inst := range insts {
			for _, pc := range checks.Plan(inst) {
				switch pc.Type {
				case "time_wait":
					if got := pc.Expected["server_peak"]; got != tt.peak[i] {
						t.Errorf("%s %s: server peak %v, want %d (%s)", tt.file, inst.Name, got, tt.peak[i], pc.Explain)
					}
				case "syn_bare_ack":
					if got := pc.Expected["rejected_share"]; got != tt.rejected {
						t.Errorf("%s: rejected %v, want %v", inst.Name, got, tt.rejected)
					}
				}
			}
		}
	}
}

// A Lab B plan puts no event past the burst: the TIME_WAIT length is not
// one, and the runner would otherwise keep observing until it (the limit).
func TestPlanLabBLength(t *testing.T) {
	sc, err := scenarios.Load("../scenarios/lab-b/nat-strip.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := checks.PredictedLength(sc); got > 11*time.Second {
		t.Errorf("predicted length %s, want the burst's 10.5 s", got)
	}
}
