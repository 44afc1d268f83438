// Package scenarios owns the scenario format: types, strict loading with
// path-and-line errors, validation, the registries of step actions and check
// kinds, matrix expansion and the JSON Schema. The lab library sits beside it.
// outcome.
package scenarios

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is one lab scenario file.
type Scenario struct {
	// Name identifies the scenario in reports; it defaults to the file name
	// without its extension.
	Name        string   `yaml:"name" json:"name"`
	Description string   `yaml:"description,omitempty" json:"description,omitempty"`
	Tags        []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Source names the article the documented values come from.
	Source Source `yaml:"source,omitempty" json:"source,omitempty"`
	// Limit bounds the timeline: a step still running then is stopped and the
	// scenario fails. Default 120s.
	Limit   Duration `yaml:"limit,omitempty" json:"limit,omitempty"`
	Network Network  `yaml:"network,omitempty" json:"network,omitempty"`
	// Networks, if set, make the lab routed: each network is a subnet of
	// its own, hosts join one each, and routers (hosts with links) join
	// several. Exclusive with Network.
	Networks map[string]*RoutedNetwork `yaml:"networks,omitempty" json:"networks,omitempty"`
	// Hosts, by name; each becomes a network namespace with one interface,
	// eth0, on the lab network (a router: one per link).
	Hosts  map[string]*Host `yaml:"hosts" json:"hosts"`
	Server Server           `yaml:"server" json:"server"`
	// Servers, if set, runs the scenario once per entry, each a server of
	// its own (flavor, engine or image) with everything else of Server; the
	// report names each instance by its server.
	Servers  []ServerVariant `yaml:"servers,omitempty" json:"servers,omitempty"`
	Captures []string        `yaml:"captures,omitempty" json:"captures,omitempty"`
	Observe  Observe         `yaml:"observe,omitempty" json:"observe,omitempty"`
	Timeline []*Step         `yaml:"timeline" json:"timeline"`
	Checks   []*Check        `yaml:"checks,omitempty" json:"checks,omitempty"`
	// Matrix runs the scenario once per cell of its axes (sysctls, server
	// variables, client options, flavor, engine).
	Matrix *Matrix `yaml:"matrix,omitempty" json:"matrix,omitempty"`

	// Cell is the matrix cell an instance runs, and Parent the name of
	// the scenario it comes from; nil and empty outside a matrix.
	Cell   *Cell  `yaml:"-" json:"-"`
	Parent string `yaml:"-" json:"-"`

	// File is the path the scenario was loaded from.
	File string `yaml:"-" json:"-"`
	// root is the parsed document, kept to find the line of a field.
	root *yaml.Node
}

// Source is the article a scenario rebuilds.
type Source struct {
	Article string `yaml:"article,omitempty" json:"article,omitempty"` // file name under shared/seeds
	Title   string `yaml:"title,omitempty" json:"title,omitempty"`
	Kernel  string `yaml:"kernel,omitempty" json:"kernel,omitempty"` // the article's kernel, e.g. "4.15.0-36-generic"
	Server  string `yaml:"server,omitempty" json:"server,omitempty"` // the article's server, e.g. "MySQL 5.7"
}

// Network is the lab network all hosts sit on.
type Network struct {
	// Subnet is an IPv4 /24 used inside the run's namespaces only; nothing is
	// routed to or from the host namespace. Default 10.89.0.0/24.
	Subnet string `yaml:"subnet,omitempty" json:"subnet,omitempty"`
}

// RoutedNetwork is one network of a routed lab (Scenario.Networks).
type RoutedNetwork struct {
	// Subnet is the network's IPv4 prefix, /16 to /30, private.
	Subnet string `yaml:"subnet" json:"subnet"`
}

// Host is one network namespace.
type Host struct {
	// Address inside the subnet (a routed lab: the host's network's);
	// default: assigned in order of host names, from .10 up.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Network names the host's network in a routed lab (Scenario.Networks).
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	// Extra are more addresses on eth0, in the same subnet.
	Extra []string `yaml:"extra,omitempty" json:"extra,omitempty"`
	// Links make the host a router of a routed lab: one link per network,
	// eth0, eth1, ... in this order. A router has no Network, Address or
	// Extra of its own.
	Links []RouterLink `yaml:"links,omitempty" json:"links,omitempty"`
	// Sysctls are written in the host's namespace before the timeline starts
	// and read back; only per-namespace keys (net.*) are accepted.
	Sysctls map[string]string `yaml:"sysctls,omitempty" json:"sysctls,omitempty"`
}

// RouterLink is a router's link to one network.
type RouterLink struct {
	Network string `yaml:"network" json:"network"`
	// Address on the network; default the first free one from the
	// network's .1 up, in order of router names.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Extra are more addresses on the link, e.g. an SNAT pool the router
	// must answer ARP for.
	Extra []string `yaml:"extra,omitempty" json:"extra,omitempty"`
}

// Router reports whether the host is a router (it has links).
func (h *Host) Router() bool { return h != nil && len(h.Links) > 0 }

// Routed reports whether the lab has several networks (networks:).
func (s *Scenario) Routed() bool { return len(s.Networks) > 0 }

// Server is the MySQL server under test.
type Server struct {
	Host string `yaml:"host" json:"host"`
	// Flavor is "mysql" (Oracle MySQL) or "mariadb".
	Flavor string `yaml:"flavor,omitempty" json:"flavor,omitempty"`
	// Engine is "process" (mysqld from a cached root filesystem, chrooted
	// in the host's namespace) or "container" (a Docker container whose
	// network namespace is the host's).
	Engine string `yaml:"engine,omitempty" json:"engine,omitempty"`
	// Image is the container engine's image, e.g. "mysql:8.4"; default the
	// local image of the flavor's root filesystem (labrun/FLAVOR:VERSION).
	// Setting it implies engine container, and the flavor defaults to the
	// one its name says.
	Image string `yaml:"image,omitempty" json:"image,omitempty"`
	// Port defaults to 3306.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Variables are passed to the server as --name=value.
	Variables map[string]string `yaml:"variables,omitempty" json:"variables,omitempty"`
	// Setup is SQL run over the lab network once the server is ready,
	// before the timeline starts.
	Setup []string `yaml:"setup,omitempty" json:"setup,omitempty"`
	// Disk puts the data directory on a filesystem of its own, made for
	// the run, for the disk steps (freeze, throttle, load, latency) and the
	// IO observation.
	Disk *Disk `yaml:"disk,omitempty" json:"disk,omitempty"`
}

// Disk is the server's data directory's own filesystem: ext4, with its
// journal, in a loop device whose backing file is on the machine's disk.
type Disk struct {
	// Size of the filesystem; default DefaultDiskSize.
	Size Bytes `yaml:"size,omitempty" json:"size,omitempty"`
	// FUSE puts a FUSE passthrough layer between the server and the ext4,
	// for the latency steps.
	FUSE bool `yaml:"fuse,omitempty" json:"fuse,omitempty"`
}

// ServerVariant is one server of a scenario's matrix: what it changes of
// Server.
type ServerVariant struct {
	// Flavor defaults to the image's (when Image is set) or Server's.
	Flavor string `yaml:"flavor,omitempty" json:"flavor,omitempty"`
	// Engine defaults to container when Image is set, else Server's.
	Engine string `yaml:"engine,omitempty" json:"engine,omitempty"`
	Image  string `yaml:"image,omitempty" json:"image,omitempty"`
	// Variables are added to Server's, and win over them.
	Variables map[string]string `yaml:"variables,omitempty" json:"variables,omitempty"`
}

// Label names a server in reports: "mariadb/container", "mysql:8.4".
func (v ServerVariant) Label() string {
	if v.Image != "" {
		return v.Image
	}
	return v.Flavor + "/" + v.Engine
}

// Observe lists what is sampled during the timeline.
type Observe struct {
	Sockets []SocketObservation `yaml:"sockets,omitempty" json:"sockets,omitempty"`
	// Processlist samples the server's threads (information_schema
	// PROCESSLIST) and transactions (INNODB_TRX) over an admin connection
	// from the server's own namespace.
	Processlist *ProcesslistObservation `yaml:"processlist,omitempty" json:"processlist,omitempty"`
	// IO samples the server's disk's counters (server.disk), as iostat
	// does.
	IO *IOObservation `yaml:"io,omitempty" json:"io,omitempty"`
	// Census counts a host's TCP sockets by state over time through
	// sock_diag, and follows each TIME_WAIT with its timer: thousands of
	// short connections, where sockets samples every socket.
	Census []CensusObservation `yaml:"census,omitempty" json:"census,omitempty"`
	// Conntrack samples a host's conntrack table (a NAT router's): entries
	// by TCP state.
	Conntrack []ConntrackObservation `yaml:"conntrack,omitempty" json:"conntrack,omitempty"`
}

// CensusObservation is one host's socket census.
type CensusObservation struct {
	Host string `yaml:"host" json:"host"`
	// Every is the period; default 250ms.
	Every Duration `yaml:"every,omitempty" json:"every,omitempty"`
	// Port keeps sockets whose local or remote port is this; default the
	// server port.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
}

// ConntrackObservation samples one host's conntrack table.
type ConntrackObservation struct {
	Host string `yaml:"host" json:"host"`
	// Every is the period; default 500ms.
	Every Duration `yaml:"every,omitempty" json:"every,omitempty"`
}

// IOObservation is the period of the disk's IO sampling.
type IOObservation struct {
	// Every is the sampling period; default 100ms.
	Every Duration `yaml:"every,omitempty" json:"every,omitempty"`
}

// ProcesslistObservation is the period of processlist sampling.
type ProcesslistObservation struct {
	// Every is the sampling period; default 200ms.
	Every Duration `yaml:"every,omitempty" json:"every,omitempty"`
}

// SocketObservation samples TCP sockets in a host's namespace via sock_diag.
type SocketObservation struct {
	Host string `yaml:"host" json:"host"`
	// Every is the sampling period; default 100ms.
	Every Duration `yaml:"every,omitempty" json:"every,omitempty"`
	// Port keeps sockets whose local or remote port is this; default the
	// server port.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
}

// Step is one timeline entry: exactly one action, started at a time or after
// another step has finished.
type Step struct {
	Name string `yaml:"name" json:"name"`
	// At is the start time relative to the start of the timeline.
	At *Duration `yaml:"at,omitempty" json:"at,omitempty"`
	// After names a step; this one starts when that one has finished, plus
	// Delay.
	After string   `yaml:"after,omitempty" json:"after,omitempty"`
	Delay Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
	// Host runs the action; an action may name a default (client steps:
	// "client").
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// Skip leaves the step out: it does not run, and the steps after it
	// start at its start time (plus their delay), as if it had finished at
	// once. A matrix axis may set it (STEP.skip).
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`

	// Kind is the action's key ("iptables", "client", ...), one of the
	// registered step actions; Action is its value, of the type the kind
	// registered (a pointer). Kinds lists every action key the step wrote,
	// for the validator to refuse a step with none or several.
	Kind   string   `yaml:"-" json:"-"`
	Action any      `yaml:"-" json:"-"`
	Kinds  []string `yaml:"-" json:"-"`
}

// stepHeader is the part of a step every action shares; it has the same
// yaml tags as Step, so that decoding it decodes the step's own fields.
type stepHeader struct {
	Name  string    `yaml:"name"`
	At    *Duration `yaml:"at,omitempty"`
	After string    `yaml:"after,omitempty"`
	Delay Duration  `yaml:"delay,omitempty"`
	Host  string    `yaml:"host,omitempty"`
	Skip  bool      `yaml:"skip,omitempty"`
}

// UnmarshalYAML decodes the shared fields, then each action key into the
// type its kind registered. The loader's walk has already reported unknown
// keys with their lines; a key that is neither is refused here too.
func (st *Step) UnmarshalYAML(n *yaml.Node) error {
	var raw map[string]yaml.Node
	if err := n.Decode(&raw); err != nil {
		return err
	}
	var h stepHeader
	if err := n.Decode(&h); err != nil {
		return err
	}
	*st = Step{Name: h.Name, At: h.At, After: h.After, Delay: h.Delay, Host: h.Host, Skip: h.Skip}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, common := fieldsOf(reflect.TypeOf(Step{})).byName[k]; common {
			continue
		}
		kind, ok := Action(k)
		if !ok {
			return fmt.Errorf("line %d: unknown field %q in a step", raw[k].Line, k)
		}
		v := kind.New()
		node := raw[k]
		if err := node.Decode(v); err != nil {
			return err
		}
		st.Kinds = append(st.Kinds, k)
		if st.Action == nil {
			st.Kind, st.Action = k, v
		}
	}
	return nil
}

// stepFields renders a step as a map with its action under its key, for
// the JSON and YAML encoders.
func (st Step) stepFields() map[string]any {
	m := map[string]any{"name": st.Name}
	if st.At != nil {
		m["at"] = *st.At
	}
	if st.After != "" {
		m["after"] = st.After
	}
	if st.Delay != 0 {
		m["delay"] = st.Delay
	}
	if st.Host != "" {
		m["host"] = st.Host
	}
	if st.Skip {
		m["skip"] = true
	}
	if st.Kind != "" {
		m[st.Kind] = st.Action
	}
	return m
}

// MarshalJSON writes the step as it is written in YAML.
func (st Step) MarshalJSON() ([]byte, error) { return json.Marshal(st.stepFields()) }

// MarshalYAML writes the step as it is written in a scenario.
func (st Step) MarshalYAML() (any, error) { return st.stepFields(), nil }

// Check compares one observed quantity with the model and the article.
type Check struct {
	Name string `yaml:"name" json:"name"`
	// Type is one of the registered check types (see checks.go).
	Type string `yaml:"type" json:"type"`
	// Step is the client step whose connection(s) the check looks at.
	Step string `yaml:"step,omitempty" json:"step,omitempty"`
	// Host is the host whose sockets, rules or capture the check reads.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// Flavors limits the check to these server flavors; empty means all.
	Flavors []string `yaml:"flavors,omitempty" json:"flavors,omitempty"`
	// Expect overrides or completes what the kernel model predicts.
	Expect *Expect `yaml:"expect,omitempty" json:"expect,omitempty"`
	// Documented is what the article reported, shown beside the model and the
	// observation.
	Documented *Documented `yaml:"documented,omitempty" json:"documented,omitempty"`
}

// Expect holds explicit expectations; which fields apply depends on the
// check type.
type Expect struct {
	Count     *int       `yaml:"count,omitempty" json:"count,omitempty"`
	Intervals []Duration `yaml:"intervals,omitempty" json:"intervals,omitempty"`
	// Error is the client error: its MySQL code, SQLSTATE, the system errno
	// in parentheses, or a substring of the message.
	Code     int    `yaml:"code,omitempty" json:"code,omitempty"`
	SQLState string `yaml:"sqlstate,omitempty" json:"sqlstate,omitempty"`
	Errno    int    `yaml:"errno,omitempty" json:"errno,omitempty"`
	Contains string `yaml:"contains,omitempty" json:"contains,omitempty"`
	// Elapsed is how long the step took.
	Elapsed *Duration `yaml:"elapsed,omitempty" json:"elapsed,omitempty"`
	// Model names the kernel schedule whose give-up time is the expected
	// elapsed time of a client_error check: syn, data or keepalive.
	Model string `yaml:"model,omitempty" json:"model,omitempty"`
	// State is a TCP state name (ESTABLISHED, SYN_RECV, ...); For is the
	// least time it must be seen; Gone requires it to disappear afterwards.
	State string   `yaml:"state,omitempty" json:"state,omitempty"`
	For   Duration `yaml:"for,omitempty" json:"for,omitempty"`
	Gone  bool     `yaml:"gone,omitempty" json:"gone,omitempty"`
	// Tolerance overrides the timing tolerance floor.
	Tolerance Duration `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// Value is the first column of the first row the step's last
	// statement returned, as text (query_value checks).
	Value *string `yaml:"value,omitempty" json:"value,omitempty"`
	// After names the step that must be over before the check's step
	// finishes (ends_after checks).
	After string `yaml:"after,omitempty" json:"after,omitempty"`
}

// Documented is the article's value for a check.
type Documented struct {
	// Value is the article's figure as it gave it: a number, a list, or text.
	Value any    `yaml:"value" json:"value"`
	Note  string `yaml:"note,omitempty" json:"note,omitempty"`
	// Flavor and Version say which server the article ran, when the value
	// only holds for it.
	Flavor  string `yaml:"flavor,omitempty" json:"flavor,omitempty"`
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
}

// Duration is a time.Duration written with a unit ("1.5s", "200ms").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration strings only: a bare number is refused
// because its unit would be a guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("bad duration: want a string such as \"1.5s\"")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a duration with a unit and refuses negative values.
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want a number with a unit (ms, s, m)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("bad duration %q: negative", s)
	}
	return v, nil
}

// MarshalYAML writes the duration in its string form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration in its string form.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// Connects reports whether the step's action opens connections to the
// server that checks can follow.
func (st *Step) Connects() bool {
	k, ok := Action(st.Kind)
	return ok && k.Connects
}
