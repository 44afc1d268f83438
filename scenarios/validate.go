package scenarios

import (
	"fmt"

	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/labrun/labrun/tcpmodel"
)

// The other closed sets of values. The schema takes its enums from these
// too, so that the editor and the loader agree.
var (
	flavors = map[string]bool{"mysql": true, "mariadb": true}
	engines = map[string]bool{"process": true, "container": true}
)

var (
	// HostName is what a host name may be: host names become part of
	// namespace and interface names, so they are kept short and plain.
	HostName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	// sysctlKey is a dotted key under net.; "net.ipv4.conf.eth0.rp_filter"
	// has an interface name in it, hence the '-'.
	SysctlKey    = regexp.MustCompile(`^net(\.[A-Za-z0-9_-]+)+$`)
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

// Validator collects problems, each with the line of its path. Step
// actions and check kinds receive one to add their own.
type Validator struct {
	s     *Scenario
	ps    []Problem
	order *stepOrder
	steps map[string]int
}

// Add records a problem at path ("timeline[2].iptables").
func (c *Validator) Add(path, format string, args ...any) {
	c.ps = append(c.ps, Problem{Line: c.s.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Validator) add(path, format string, args ...any) { c.Add(path, format, args...) }

// Scenario is the scenario being validated, with its defaults applied.
func (c *Validator) Scenario() *Scenario { return c.s }

// Step returns the step with that name and its index, or nil.
func (c *Validator) Step(name string) (*Step, int) {
	i, ok := c.steps[name]
	if !ok {
		return nil, -1
	}
	return c.s.Timeline[i], i
}

// Before reports whether step a certainly starts before step b: a is in
// b's chain of after, or a starts at a fixed time earlier than b can.
func (c *Validator) Before(a, b int) bool { return c.order.before(a, b) }

func (s *Scenario) validate() []Problem {
	c := &Validator{s: s, steps: map[string]int{}}
	for i, st := range s.Timeline {
		if st != nil && st.Name != "" {
			if _, dup := c.steps[st.Name]; !dup {
				c.steps[st.Name] = i
			}
		}
	}
	c.order = newOrder(s.Timeline, c.steps)
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
	for i, o := range s.Observe.Census {
		path := fmt.Sprintf("observe.census[%d]", i)
		c.host(path+".host", o.Host)
		c.port(path+".port", o.Port)
		c.period(path+".every", o.Every)
	}
	for i, o := range s.Observe.Conntrack {
		path := fmt.Sprintf("observe.conntrack[%d]", i)
		c.host(path+".host", o.Host)
		c.period(path+".every", o.Every)
	}
	c.timeline()
	c.checks()
	c.matrix()
	return c.ps
}

func (c *Validator) hosts() {
	s := c.s
	if len(s.Hosts) == 0 {
		c.add("hosts", "want at least one host")
		return
	}
	if s.Routed() {
		c.routedHosts()
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
		c.hostName(path, name)
		if h == nil {
			continue
		}
		if h.Network != "" {
			c.add(path+".network", "only in a routed lab (networks:); this lab is the single network.subnet")
		}
		if len(h.Links) > 0 {
			c.add(path+".links", "a router needs a routed lab: write networks: instead of network:")
		} else if prefix.IsValid() {
			c.address(path+".address", name, h.Address, prefix, owner)
			c.extra(path+".extra", name, h.Extra, prefix, owner)
		}
		c.sysctls(path+".sysctls", h.Sysctls)
	}
}

func (c *Validator) address(path, host, addr string, prefix netip.Prefix, owner map[netip.Addr]string) {
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
	if a == prefix.Masked().Addr() || a == lastAddr(prefix) {
		c.add(path, "address %s is the subnet's network or broadcast address", a)
		return
	}
	if other, ok := owner[a]; ok {
		c.add(path, "address %s is already used by host %s", a, other)
		return
	}
	owner[a] = host
}

func (c *Validator) sysctls(path string, m map[string]string) {
	for _, k := range sortedNames(m) {
		p := joinKey(path, k)
		switch {
		case !strings.HasPrefix(k, "net."):
			// Other keys are not per namespace: writing them would change
			// the host.
			c.add(p, "bad sysctl key %q: only per-namespace keys under net. are accepted", k)
		case !SysctlKey.MatchString(k):
			c.add(p, "bad sysctl key %q: want a dotted name such as net.ipv4.tcp_syn_retries", k)
		case readOnlySysctls[k]:
			c.add(p, "sysctl %s is the machine's, read-only in a lab namespace: it cannot be set per host", k)
		case strings.TrimSpace(m[k]) == "":
			c.add(p, "empty value")
		default:
			if err := tcpmodel.CheckValue(k, m[k]); err != nil {
				c.add(p, "bad value %q: %v", m[k], err)
			}
		}
	}
}

// Host checks a reference to a host.
func (c *Validator) Host(path, name string) { c.host(path, name) }

// Sysctls checks a map of sysctls: per-namespace keys under net. only.
func (c *Validator) Sysctls(path string, m map[string]string) { c.sysctls(path, m) }

// host checks a reference to a host.
func (c *Validator) host(path, name string) {
	if name == "" {
		c.add(path, "required")
		return
	}
	if _, ok := c.s.Hosts[name]; !ok {
		c.add(path, "unknown host %q (hosts: %s)", name, strings.Join(sortedNames(c.s.Hosts), ", "))
	}
}

func (c *Validator) port(path string, p int) {
	if p < 1 || p > 65535 {
		c.add(path, "bad port %d: want 1 to 65535", p)
	}
}

func (c *Validator) server() {
	sv := c.s.Server
	c.host("server.host", sv.Host)
	c.serverKind("server", sv.Flavor, sv.Engine, sv.Image)
	c.port("server.port", sv.Port)
	c.variables("server.variables", sv.Variables)
	if sv.Disk != nil && sv.Disk.Size < MinDiskSize {
		c.add("server.disk.size", "want at least %s for the data directory", Bytes(MinDiskSize))
	}
	if c.s.Observe.IO != nil && sv.Disk == nil {
		c.add("observe.io", "samples the server's own disk: set server.disk")
	}
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
func (c *Validator) serverKind(path, flavor, engine, image string) {
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

func (c *Validator) variables(path string, vars map[string]string) {
	for _, k := range sortedNames(vars) {
		if !variableName.MatchString(k) {
			c.add(joinKey(path, k), "bad variable name %q: want letters, digits, '_' and '-'", k)
		}
	}
}

// timeline checks the steps one by one, then the order they can run in,
// then what each action kind checks across its steps.
func (c *Validator) timeline() {
	s := c.s
	if len(s.Timeline) == 0 {
		c.add("timeline", "want at least one step")
		return
	}
	byName := c.steps
	used := map[string]bool{}
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
		switch len(st.Kinds) {
		case 0:
			c.add(path, "missing action: want one of %s", strings.Join(ActionNames(), ", "))
		case 1:
		default:
			c.add(path, "more than one action (%s): want exactly one", strings.Join(st.Kinds, ", "))
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

		kind, ok := Action(st.Kind)
		if st.Host == "" {
			if ok && kind.Host == HostRequired {
				c.add(path+".host", "required for a %s step", st.Kind)
			}
		} else {
			c.host(path+".host", st.Host)
		}
		if ok && len(st.Kinds) == 1 {
			used[st.Kind] = true
			if kind.Validate != nil {
				kind.Validate(c, path+"."+st.Kind, st)
			}
		}
	}

	o := c.order
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
	for _, k := range Actions() {
		if used[k.Name] && k.ValidateAll != nil {
			k.ValidateAll(c)
		}
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
func (c *Validator) cycles(o *stepOrder) {
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

// checks validates each check against its registered kind: the step it
// names, the expect keys and models it understands, the samples it reads.
// An expectation a check would ignore is refused here, not after a
// minute of timeline; a scenario without checks could only pass on
// nothing, so it is refused too.
func (c *Validator) checks() {
	s := c.s
	if len(s.Checks) == 0 {
		c.add("checks", "want at least one check: a scenario without checks has nothing to pass on")
		return
	}
	byName := map[string]int{}
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
		if ck.Host != "" {
			c.host(path+".host", ck.Host)
		}
		for j, f := range ck.Flavors {
			if !flavors[f] {
				c.add(fmt.Sprintf("%s.flavors[%d]", path, j), "unknown flavor %q (want %s)", f, oneOfText(flavors))
			}
		}
		if d := ck.Documented; d != nil && d.Flavor != "" && !flavors[d.Flavor] {
			c.add(path+".documented.flavor", "unknown flavor %q (want %s)", d.Flavor, oneOfText(flavors))
		}
		kind, ok := CheckKindOf(ck.Type)
		switch {
		case ck.Type == "":
			c.add(path+".type", "required")
			continue
		case !ok:
			c.add(path+".type", "unknown check type %q (known: %s)", ck.Type, strings.Join(CheckNames(), ", "))
			continue
		}
		switch kind.Step {
		case StepConnection, StepAny:
			if ck.Step == "" {
				c.add(path+".step", "required for %s", ck.Type)
			}
		case StepNone:
			if ck.Step != "" {
				c.add(path+".step", "%s takes no step", ck.Type)
			}
		}
		if ck.Step != "" {
			st, _ := c.Step(ck.Step)
			switch {
			case st == nil:
				c.add(path+".step", "no step named %q", ck.Step)
			case st.Skip:
				c.add(path+".step", "step %s is skipped", ck.Step)
			case kind.Step == StepConnection && !st.Connects():
				c.add(path+".step", "step %q is not a client step: %s follows the connection a step opens", ck.Step, ck.Type)
			}
		}
		if kind.Processlist && s.Observe.Processlist == nil {
			c.add(path+".type", "%s needs observe.processlist", ck.Type)
		}
		accepted := map[string]bool{}
		for _, k := range append(append([]string{}, kind.Expect...), kind.Required...) {
			accepted[k] = true
		}
		set := ck.Expect.setKeys()
		for _, k := range set {
			if !accepted[k] {
				if len(accepted) == 0 {
					c.add(path+".expect."+k, "%s takes no expectation: its expected values come from the model", ck.Type)
				} else {
					c.add(path+".expect."+k, "%s does not read expect.%s (it reads: %s)", ck.Type, k, strings.Join(sortedNames(accepted), ", "))
				}
			}
		}
		for _, k := range kind.Required {
			if !contains(set, k) {
				c.add(path+".expect."+k, "required for %s", ck.Type)
			}
		}
		if e := ck.Expect; e != nil {
			if e.Count != nil && *e.Count < 0 {
				c.add(path+".expect.count", "want 0 or more")
			}
			if e.Count != nil && *e.Count >= 0 && len(e.Intervals) > 0 && len(e.Intervals) != *e.Count {
				c.add(path+".expect.intervals", "%d intervals for count %d: want one interval per retransmission", len(e.Intervals), *e.Count)
			}
			if e.Model != "" && accepted["model"] && !contains(kind.Models, e.Model) {
				c.add(path+".expect.model", "%s has no model %q (want %s)", ck.Type, e.Model, oneOfList(kind.Models))
			}
			if e.After != "" && accepted["after"] {
				if st, _ := c.Step(e.After); st == nil {
					c.add(path+".expect.after", "no step named %q", e.After)
				} else if st.Skip {
					c.add(path+".expect.after", "step %s is skipped", e.After)
				}
			}
		}
		if kind.Validate != nil {
			kind.Validate(c, path, ck)
		}
	}
}

// setKeys lists the keys of expect that the scenario set, by their YAML
// names.
func (e *Expect) setKeys() []string {
	if e == nil {
		return nil
	}
	var out []string
	v := reflect.ValueOf(*e)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, ok := yamlName(t.Field(i))
		if ok && !v.Field(i).IsZero() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// oneOfList writes values as "a, b or c".
func oneOfList(keys []string) string {
	set := map[string]bool{}
	for _, k := range keys {
		set[k] = true
	}
	if len(set) == 0 {
		return "none"
	}
	return oneOfText(set)
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

// period checks a sampling period: at least 10ms, as the samplers take.
func (c *Validator) period(path string, d Duration) {
	if d.D() < 10*time.Millisecond {
		c.add(path, "want a period of 10ms or more")
	}
}
