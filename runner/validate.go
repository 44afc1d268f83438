package runner

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/netem"
)

// CheckTypes are the check types a scenario may name. Each has an
// implementation registered under the same name; the loader refuses the
// others so that a typo fails before anything is set up.
var CheckTypes = map[string]bool{
	"syn_retransmits":    true,
	"synack_retransmits": true,
	"data_retransmits":   true,
	"keepalive_probes":   true,
	"client_error":       true,
	"socket_state":       true,
	"iptables_counter":   true,
	"thread_state":       true,
	"trx_state":          true,
	"query_value":        true,
	"zero_window":        true,
	"write_timeout":      true,
	"ends_after":         true,
}

// The other closed sets of values. The schema takes its enums from these
// too, so that the editor and the loader agree.
var (
	flavors     = map[string]bool{"mysql": true, "mariadb": true}
	engines     = map[string]bool{"process": true, "container": true}
	clientKinds = map[string]bool{"cli": true, "go": true}
	// expectModels are the kernel schedules (tcpmodel) a check can take its
	// expected times from.
	expectModels = map[string]bool{"syn": true, "synack": true, "data": true, "keepalive": true}
	// tcpStates are the kernel's names (include/net/tcp_states.h) without
	// the TCP_ prefix, as sock_diag reports them.
	tcpStates = map[string]bool{
		"ESTABLISHED": true, "SYN_SENT": true, "SYN_RECV": true, "FIN_WAIT1": true,
		"FIN_WAIT2": true, "TIME_WAIT": true, "CLOSE": true, "CLOSE_WAIT": true,
		"LAST_ACK": true, "LISTEN": true, "CLOSING": true, "NEW_SYN_RECV": true,
	}
)

var (
	// Host names become part of namespace and interface names, so they are
	// kept short and plain.
	hostName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	// sysctlKey is a dotted key under net.; "net.ipv4.conf.eth0.rp_filter"
	// has an interface name in it, hence the '-'.
	sysctlKey    = regexp.MustCompile(`^net(\.[A-Za-z0-9_-]+)+$`)
	variableName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// imageRef is a Docker image reference: [registry[:port]/]path[:tag]
	// [@digest], lowercase path components.
	imageRef = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$`)
)

// Validate checks a scenario that has had its defaults applied, as Load
// does, and returns a *ValidationError listing every problem, or nil. It is
// for scenarios changed after loading (a matrix variant); Load already
// validates.
func (s *Scenario) Validate() error {
	ps := s.validate()
	if len(ps) == 0 {
		return nil
	}
	sortProblems(ps)
	return &ValidationError{File: s.File, Problems: ps}
}

// checker collects problems, each with the line of its path.
type checker struct {
	s  *Scenario
	ps []Problem
}

func (c *checker) add(path, format string, args ...any) {
	c.ps = append(c.ps, Problem{Line: c.s.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (s *Scenario) validate() []Problem {
	c := &checker{s: s}
	if s.Name == "" {
		c.add("name", "required (there is no file name to take it from)")
	} else if strings.ContainsFunc(s.Name, unicode.IsControl) {
		// The name is printed in one-line summaries and JUnit test names.
		c.add("name", "bad name %q: no control characters", s.Name)
	}
	if s.Limit <= 0 {
		c.add("limit", "want a positive duration")
	}
	c.hosts()
	c.server()
	for i, h := range s.Captures {
		path := fmt.Sprintf("captures[%d]", i)
		c.host(path, h)
		for _, prev := range s.Captures[:i] {
			if prev == h && h != "" {
				c.add(path, "host %q listed twice", h)
				break
			}
		}
	}
	for i, o := range s.Observe.Sockets {
		path := fmt.Sprintf("observe.sockets[%d]", i)
		c.host(path+".host", o.Host)
		c.port(path+".port", o.Port)
	}
	c.timeline()
	c.sessions()
	c.checks()
	return c.ps
}

// sessions checks that a named session stays on one host and that every
// {{NAME.id}} names a session some step opens.
func (c *checker) sessions() {
	hosts := map[string]string{}
	for i, st := range c.s.Timeline {
		if st == nil || st.Client == nil || st.Client.Session == "" {
			continue
		}
		name := st.Client.Session
		if h, ok := hosts[name]; ok && h != st.Host {
			c.add(fmt.Sprintf("timeline[%d].host", i), "session %q is on host %s, not %s", name, h, st.Host)
		} else if !ok {
			hosts[name] = st.Host
		}
	}
	for i, st := range c.s.Timeline {
		if st == nil || st.Client == nil {
			continue
		}
		for j, stmt := range st.Client.SQL {
			for _, ref := range client.SessionRefs(stmt) {
				if _, ok := hosts[ref]; !ok {
					c.add(fmt.Sprintf("timeline[%d].client.sql[%d]", i, j), "{{%s.id}} names no session (no step has session: %s)", ref, ref)
				}
			}
		}
	}
}

func (c *checker) hosts() {
	s := c.s
	if len(s.Hosts) == 0 {
		c.add("hosts", "want at least one host")
		return
	}
	prefix, err := netip.ParsePrefix(s.Network.Subnet)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() != 24 {
		c.add("network.subnet", "bad subnet %q: want an IPv4 /24 such as %s", s.Network.Subnet, DefaultSubnet)
		prefix = netip.Prefix{}
	} else if prefix.Masked() != prefix {
		c.add("network.subnet", "bad subnet %q: want the network address, %s", s.Network.Subnet, prefix.Masked())
		prefix = netip.Prefix{}
	}
	owner := map[netip.Addr]string{}
	for _, name := range sortedNames(s.Hosts) {
		h := s.Hosts[name]
		path := joinKey("hosts", name)
		if !hostName.MatchString(name) {
			c.add(path, "bad host name %q: want up to 32 lowercase letters, digits, '-' and '_', starting with a letter", name)
		}
		if h == nil {
			continue
		}
		if prefix.IsValid() {
			c.address(path+".address", name, h.Address, prefix, owner)
		}
		c.sysctls(path+".sysctls", h.Sysctls)
	}
}

func (c *checker) address(path, host, addr string, prefix netip.Prefix, owner map[netip.Addr]string) {
	if addr == "" {
		c.add(path, "no free address left in %s", prefix)
		return
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		c.add(path, "bad address %q: want an IPv4 address in %s", addr, prefix)
		return
	}
	if !prefix.Contains(a) {
		c.add(path, "address %s is outside the subnet %s", a, prefix)
		return
	}
	if last := a.As4()[3]; last == 0 || last == 255 {
		c.add(path, "address %s is the subnet's network or broadcast address", a)
		return
	}
	if other, ok := owner[a]; ok {
		c.add(path, "address %s is already used by host %s", a, other)
		return
	}
	owner[a] = host
}

func (c *checker) sysctls(path string, m map[string]string) {
	for _, k := range sortedNames(m) {
		p := joinKey(path, k)
		switch {
		case !strings.HasPrefix(k, "net."):
			// Other keys are not per namespace: writing them would change
			// the host.
			c.add(p, "bad sysctl key %q: only per-namespace keys under net. are accepted", k)
		case !sysctlKey.MatchString(k):
			c.add(p, "bad sysctl key %q: want a dotted name such as net.ipv4.tcp_syn_retries", k)
		case strings.TrimSpace(m[k]) == "":
			c.add(p, "empty value")
		}
	}
}

// host checks a reference to a host.
func (c *checker) host(path, name string) {
	if name == "" {
		c.add(path, "required")
		return
	}
	if _, ok := c.s.Hosts[name]; !ok {
		c.add(path, "unknown host %q (hosts: %s)", name, strings.Join(sortedNames(c.s.Hosts), ", "))
	}
}

func (c *checker) port(path string, p int) {
	if p < 1 || p > 65535 {
		c.add(path, "bad port %d: want 1 to 65535", p)
	}
}

func (c *checker) server() {
	sv := c.s.Server
	c.host("server.host", sv.Host)
	c.serverKind("server", sv.Flavor, sv.Engine, sv.Image)
	c.port("server.port", sv.Port)
	c.variables("server.variables", sv.Variables)
	seen := map[string]int{}
	for i, v := range c.s.Servers {
		path := fmt.Sprintf("servers[%d]", i)
		c.serverKind(path, v.Flavor, v.Engine, v.Image)
		c.variables(path+".variables", v.Variables)
		if first, dup := seen[v.Label()]; dup {
			c.add(path, "server %s listed twice (first at servers[%d])", v.Label(), first)
		} else {
			seen[v.Label()] = i
		}
	}
}

// serverKind checks what makes a server: its flavor, engine and image.
func (c *checker) serverKind(path, flavor, engine, image string) {
	badImage := image != "" && !imageRef.MatchString(image)
	switch {
	case badImage:
		c.add(path+".image", "bad image %q: want a Docker image reference such as mysql:8.4", image)
	case flavor == "" && image != "":
		// The flavor was left out and the image's name does not say it.
		c.add(path+".image", "cannot tell the flavor of image %q from its name: write flavor (want %s)", image, oneOfText(flavors))
	case !flavors[flavor]:
		c.add(path+".flavor", "unknown flavor %q (want %s)", flavor, oneOfText(flavors))
	}
	if !engines[engine] {
		c.add(path+".engine", "unknown engine %q (want %s)", engine, oneOfText(engines))
	} else if image != "" && !badImage && engine != "container" {
		c.add(path+".image", "an image needs engine container, not %s", engine)
	}
}

func (c *checker) variables(path string, vars map[string]string) {
	for _, k := range sortedNames(vars) {
		if !variableName.MatchString(k) {
			c.add(joinKey(path, k), "bad variable name %q: want letters, digits, '_' and '-'", k)
		}
	}
}

// timeline checks the steps one by one, then the order they can run in.
func (c *checker) timeline() {
	s := c.s
	if len(s.Timeline) == 0 {
		c.add("timeline", "want at least one step")
		return
	}
	byName := map[string]int{}
	for i, st := range s.Timeline {
		if st != nil && st.Name != "" {
			if _, dup := byName[st.Name]; !dup {
				byName[st.Name] = i
			}
		}
	}
	rules := make([]*netem.Rule, len(s.Timeline))
	badRule := false
	for i, st := range s.Timeline {
		path := fmt.Sprintf("timeline[%d]", i)
		if st == nil {
			c.add(path, "empty step")
			continue
		}
		if st.Name == "" {
			c.add(path+".name", "required")
		} else if first := byName[st.Name]; first != i {
			c.add(path+".name", "duplicate step name %q (first at line %d)", st.Name, s.Line(fmt.Sprintf("timeline[%d].name", first)))
		}

		var actions []string
		if st.Iptables != "" {
			actions = append(actions, "iptables")
		}
		if len(st.Sysctl) > 0 {
			actions = append(actions, "sysctl")
		}
		if st.Client != nil {
			actions = append(actions, "client")
		}
		if st.Sleep != nil {
			actions = append(actions, "sleep")
		}
		if st.Vanish != nil {
			actions = append(actions, "vanish")
		}
		if st.Netem != nil {
			actions = append(actions, "netem")
			n := st.Netem
			if n.Loss != "" {
				if _, err := netem.ParsePercent(n.Loss); err != nil {
					c.add(path+".netem.loss", "%v", err)
				}
			}
			switch {
			case n.Remove && (n.Delay != 0 || n.Jitter != 0 || n.Loss != ""):
				c.add(path+".netem", "remove takes no delay, jitter or loss")
			case !n.Remove && n.Delay == 0 && n.Loss == "":
				c.add(path+".netem", "want delay or loss, or remove: true")
			case n.Jitter != 0 && n.Delay == 0:
				c.add(path+".netem.jitter", "only with delay")
			}
		}
		switch len(actions) {
		case 0:
			c.add(path, "missing action: want one of iptables, sysctl, client, sleep, netem, vanish")
		case 1:
		default:
			c.add(path, "more than one action (%s): want exactly one", strings.Join(actions, ", "))
		}

		switch {
		case st.At != nil && st.After != "":
			c.add(path, "at and after are mutually exclusive")
		case st.At == nil && st.After == "":
			c.add(path, "missing start: want at or after")
		case st.After != "":
			if _, ok := byName[st.After]; !ok {
				c.add(path+".after", "no step named %q", st.After)
			}
		case *st.At >= s.Limit:
			// The timeline ends at the limit, so a step due then never runs.
			c.add(path+".at", "impossible timeline: at %s is %s the limit %s", fmtDuration(*st.At), afterOrAt(*st.At, s.Limit), fmtDuration(s.Limit))
		}
		if st.Delay != 0 && st.After == "" {
			c.add(path+".delay", "only with after")
		}

		if st.Host == "" {
			if len(actions) > 0 && actions[0] != "sleep" {
				c.add(path+".host", "required for a %s step", actions[0])
			}
		} else {
			c.host(path+".host", st.Host)
		}

		if st.Iptables != "" {
			r, err := netem.ParseRule(st.Iptables)
			if err != nil {
				c.add(path+".iptables", "bad iptables rule: %v", err)
				badRule = true
			} else {
				rules[i] = &r
			}
		}
		c.sysctls(path+".sysctl", st.Sysctl)
		if st.Client != nil {
			c.client(path+".client", st.Client)
		}
	}

	o := newOrder(s.Timeline, byName)
	c.cycles(o)
	for i, st := range s.Timeline {
		if st == nil || st.At != nil || st.After == "" {
			continue
		}
		// Report only the first step of a chain that runs past the limit;
		// the ones after it follow from it.
		start, ok := o.earliest(i)
		parent, pok := o.earliest(byName[st.After])
		if ok && pok && start >= s.Limit.D() && parent < s.Limit.D() {
			path := fmt.Sprintf("timeline[%d].after", i)
			if st.Delay != 0 {
				path = fmt.Sprintf("timeline[%d].delay", i)
			}
			c.add(path, "impossible timeline: starts at %s at the earliest, %s the limit %s", fmtDuration(Duration(start)), afterOrAt(Duration(start), s.Limit), fmtDuration(s.Limit))
		}
	}
	if !badRule {
		// With a rule that did not parse, its -D or -A would be missing
		// here and the report would blame the wrong step.
		c.deletes(o, rules)
	}
}

func (c *checker) client(path string, ca *ClientAction) {
	switch {
	case ca.Kind == "":
		c.add(path+".kind", "required (%s)", oneOfText(clientKinds))
	case !clientKinds[ca.Kind]:
		c.add(path+".kind", "unknown client kind %q (want %s)", ca.Kind, oneOfText(clientKinds))
	}
	if ca.Kind != "go" {
		// The cli client has no equivalent option; accepting them would
		// promise a timeout that never happens.
		if ca.ReadTimeout != 0 {
			c.add(path+".read_timeout", "only for kind go")
		}
		if ca.WriteTimeout != 0 {
			c.add(path+".write_timeout", "only for kind go")
		}
		if ca.Session != "" {
			c.add(path+".session", "only for kind go")
		}
		if ca.RcvBuf != 0 {
			c.add(path+".rcvbuf", "only for kind go")
		}
	}
	if ca.Close && ca.Session == "" {
		c.add(path+".close", "only with session")
	}
	if ca.Session != "" && !hostName.MatchString(ca.Session) {
		c.add(path+".session", "bad session name %q: lowercase letters, digits, - and _", ca.Session)
	}
	if ca.Stream != nil && ca.Stream.Pause <= 0 {
		c.add(path+".stream.pause", "want a positive duration")
	}
	if ca.Stream != nil && ca.Stream.Rows < 0 {
		c.add(path+".stream.rows", "want 1 or more")
	}
	if ca.RcvBuf < 0 {
		c.add(path+".rcvbuf", "want 0 or more bytes")
	}
}

// stepOrder answers questions about when steps can start. Every step has at
// most one predecessor (after), so the steps form chains that start at an
// "at" step, unless a chain loops.
type stepOrder struct {
	steps  []*Step
	byName map[string]int
	memo   map[int]time.Duration
}

func newOrder(steps []*Step, byName map[string]int) *stepOrder {
	return &stepOrder{steps: steps, byName: byName, memo: map[int]time.Duration{}}
}

// parent returns the index of the step i starts after, or -1.
func (o *stepOrder) parent(i int) int {
	st := o.steps[i]
	if st == nil || st.At != nil || st.After == "" {
		return -1
	}
	p, ok := o.byName[st.After]
	if !ok {
		return -1
	}
	return p
}

// earliest returns the earliest time step i can start: its at, or its
// chain's at plus the delays on the way, since every step takes some time.
// ok is false for a step whose chain loops or leads nowhere.
func (o *stepOrder) earliest(i int) (time.Duration, bool) {
	if d, ok := o.memo[i]; ok {
		return d, true
	}
	var total time.Duration
	seen := map[int]bool{}
	for j := i; ; {
		if seen[j] {
			return 0, false
		}
		seen[j] = true
		st := o.steps[j]
		if st == nil {
			return 0, false
		}
		if st.At != nil {
			total += st.At.D()
			break
		}
		total += st.Delay.D()
		if j = o.parent(j); j < 0 {
			return 0, false
		}
	}
	o.memo[i] = total
	return total, true
}

// ancestors returns the steps that must finish before step i starts.
func (o *stepOrder) ancestors(i int) map[int]bool {
	a := map[int]bool{}
	for j := o.parent(i); j >= 0 && !a[j]; j = o.parent(j) {
		a[j] = true
	}
	return a
}

// before reports whether step a certainly starts before step b: a is in
// b's chain, or a starts at a fixed time earlier than b can.
func (o *stepOrder) before(a, b int) bool {
	if o.ancestors(b)[a] {
		return true
	}
	at := o.steps[a].At
	if at == nil {
		return false
	}
	start, ok := o.earliest(b)
	return ok && at.D() < start
}

// cycles reports each loop of after references once, at its first step.
func (c *checker) cycles(o *stepOrder) {
	done := map[int]bool{}
	for i := range o.steps {
		pos := map[int]int{}
		var path []int
		j := i
		for j >= 0 && !done[j] {
			if _, looped := pos[j]; looped {
				break
			}
			pos[j] = len(path)
			path = append(path, j)
			j = o.parent(j)
		}
		for _, k := range path {
			done[k] = true
		}
		start, looped := pos[j]
		if j < 0 || !looped {
			continue
		}
		loop := path[start:]
		first := 0
		for n, k := range loop {
			if k < loop[first] {
				first = n
			}
		}
		loop = append(loop[first:], loop[:first]...)
		var names []string
		for _, k := range loop {
			names = append(names, o.steps[k].Name)
		}
		names = append(names, names[0])
		c.add(fmt.Sprintf("timeline[%d].after", loop[0]), "impossible timeline: cycle %s", strings.Join(names, " -> "))
	}
}

// deletes checks that every rule a step deletes was added, on the same
// host, by a step that certainly runs before it: iptables -D fails on a
// rule that is not there, and the run would stop halfway.
func (c *checker) deletes(o *stepOrder, rules []*netem.Rule) {
	for i, r := range rules {
		if r == nil || r.Op != "-D" {
			continue
		}
		host := o.steps[i].Host
		candidate := -1
		found := false
		for j, a := range rules {
			if a == nil || a.Op == "-D" || o.steps[j].Host != host || a.Key() != r.Key() {
				continue
			}
			if o.before(j, i) {
				found = true
				break
			}
			if candidate < 0 {
				candidate = j
			}
		}
		path := fmt.Sprintf("timeline[%d].iptables", i)
		switch {
		case found:
		case candidate >= 0:
			c.add(path, "impossible timeline: deletes the rule before step %q certainly adds it (make this step start after %q)", o.steps[candidate].Name, o.steps[candidate].Name)
		default:
			c.add(path, "impossible timeline: no step adds this rule on host %s before this step deletes it", host)
		}
	}
}

func (c *checker) checks() {
	s := c.s
	byName := map[string]int{}
	steps := map[string]*Step{}
	for _, st := range s.Timeline {
		if st != nil && st.Name != "" {
			if _, dup := steps[st.Name]; !dup {
				steps[st.Name] = st
			}
		}
	}
	for i, ck := range s.Checks {
		path := fmt.Sprintf("checks[%d]", i)
		if ck == nil {
			c.add(path, "empty check")
			continue
		}
		if ck.Name == "" {
			c.add(path+".name", "required")
		} else if first, dup := byName[ck.Name]; dup {
			c.add(path+".name", "duplicate check name %q (first at line %d)", ck.Name, s.Line(fmt.Sprintf("checks[%d].name", first)))
		} else {
			byName[ck.Name] = i
		}
		switch {
		case ck.Type == "":
			c.add(path+".type", "required")
		case !CheckTypes[ck.Type]:
			c.add(path+".type", "unknown check type %q (known: %s)", ck.Type, strings.Join(sortedNames(CheckTypes), ", "))
		}
		// Some types cannot run without their expectation or their samples;
		// say so now rather than after a minute of timeline.
		switch ck.Type {
		case "socket_state", "thread_state", "trx_state":
			if ck.Expect == nil || ck.Expect.State == "" {
				c.add(path+".expect.state", "required for %s", ck.Type)
			}
		case "query_value":
			if ck.Expect == nil || ck.Expect.Value == nil {
				c.add(path+".expect.value", "required for query_value")
			}
		case "ends_after":
			if ck.Expect == nil || ck.Expect.After == "" {
				c.add(path+".expect.after", "required for ends_after")
			} else if _, ok := steps[ck.Expect.After]; !ok {
				c.add(path+".expect.after", "no step named %q", ck.Expect.After)
			}
		}
		if (ck.Type == "thread_state" || ck.Type == "trx_state") && c.s.Observe.Processlist == nil {
			c.add(path+".type", "%s needs observe.processlist", ck.Type)
		}
		if ck.Step == "" && CheckTypes[ck.Type] && ck.Type != "iptables_counter" {
			c.add(path+".step", "required for %s", ck.Type)
		}
		if ck.Step != "" {
			switch st, ok := steps[ck.Step]; {
			case !ok:
				c.add(path+".step", "no step named %q", ck.Step)
			case st.Client == nil && ck.Type != "iptables_counter":
				c.add(path+".step", "step %q is not a client step", ck.Step)
			}
		}
		if ck.Host != "" {
			c.host(path+".host", ck.Host)
		}
		for j, f := range ck.Flavors {
			if !flavors[f] {
				c.add(fmt.Sprintf("%s.flavors[%d]", path, j), "unknown flavor %q (want %s)", f, oneOfText(flavors))
			}
		}
		if e := ck.Expect; e != nil {
			if e.Count != nil && *e.Count < 0 {
				c.add(path+".expect.count", "want 0 or more")
			}
			if e.Model != "" && !expectModels[e.Model] {
				c.add(path+".expect.model", "unknown model %q (want %s)", e.Model, oneOfText(expectModels))
			}
			// thread_state and trx_state take the server's own words
			// ("Sending to client", "LOCK WAIT"); socket_state takes TCP's.
			if e.State != "" && ck.Type == "socket_state" && !tcpStates[e.State] {
				c.add(path+".expect.state", "unknown TCP state %q (known: %s)", e.State, strings.Join(sortedNames(tcpStates), ", "))
			}
		}
		if d := ck.Documented; d != nil && d.Flavor != "" && !flavors[d.Flavor] {
			c.add(path+".documented.flavor", "unknown flavor %q (want %s)", d.Flavor, oneOfText(flavors))
		}
	}
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// oneOfText writes a set's values as "a, b or c".
func oneOfText(set map[string]bool) string {
	keys := sortedNames(set)
	if len(keys) == 1 {
		return keys[0]
	}
	return strings.Join(keys[:len(keys)-1], ", ") + " or " + keys[len(keys)-1]
}

func afterOrAt(d, limit Duration) string {
	if d > limit {
		return "after"
	}
	return "at"
}

// fmtDuration writes whole seconds as "130s" rather than "2m10s", since
// scenarios are written in seconds.
func fmtDuration(d Duration) string {
	switch {
	case d%Duration(time.Second) == 0:
		return fmt.Sprintf("%ds", d/Duration(time.Second))
	case d%Duration(time.Millisecond) == 0:
		return fmt.Sprintf("%dms", d/Duration(time.Millisecond))
	}
	return d.String()
}
