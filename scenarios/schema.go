package scenarios

//go:generate go run gen_schema.go

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// SchemaFile is where the schema lives in the repository, relative to its
// root; scenario files point their editor at it with a
// "# yaml-language-server: $schema=../schema.json" line.
const SchemaFile = "scenarios/schema.json"

// durationPattern is what time.ParseDuration accepts, without a sign:
// negative durations are refused by the loader.
const durationPattern = `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// typeDocs and fieldDocs describe the scenario format in the schema, which
// editors show on hover. They repeat the comments in scenario.go because
// comments are not available at run time; TestSchemaDocs fails when a field
// has none, so a new field cannot be forgotten here.
var typeDocs = map[string]string{
	"Scenario":          "A labrun scenario: hosts in their own network namespaces, a MySQL server, a timeline of faults and clients, and checks of the outcome.",
	"Source":            "The article a scenario rebuilds.",
	"Network":           "The lab network all hosts sit on.",
	"Host":              "One network namespace with one interface, eth0, on the lab network; a router (links) has one per network it joins.",
	"RoutedNetwork":     "One network of a routed lab: a subnet on a bridge of its own.",
	"RouterLink":        "A router's link to one network; the links are the router's eth0, eth1, ... in their order.",
	"Server":            "The MySQL server under test.",
	"ServerVariant":     "One server of the scenario's matrix: the scenario runs once per entry, with everything of server but what the entry sets.",
	"Observe":           "What is sampled during the timeline.",
	"SocketObservation": "Samples TCP sockets in a host's namespace via sock_diag.",
	"Step":              "One timeline entry: exactly one action, started at a time (at) or after another step has finished (after, plus delay).",
	"Check":             "Compares one observed quantity with the kernel model and the article.",
	"Expect":            "Explicit expectations; which fields apply depends on the check type.",
	"Matrix":            "Runs the scenario once per cell: the product of the axes, or the cells listed.",
	"Axis":              "One dimension of a matrix.",
	"CellTags":          "Tags for the cells that match.",
	"Documented":        "The article's value for a check, shown beside the model and the observation.",
	"Bytes":             "A size: a number of bytes, or a number with a binary unit: \"512KiB\", \"4MiB\", \"1GiB\".",
	"Disk":              "The data directory's own filesystem: ext4 with its journal, in a loop device whose backing file is on the machine's disk, made for the run and removed after it.",
	"IOObservation":     "Samples the server disk's counters (/sys/block/loopN/stat) as iostat -x does.",
	"Duration":          "A duration with a unit: \"1.5s\", \"200ms\", \"2m\". A bare number is refused because its unit would be a guess.",
}

var fieldDocs = map[string]string{
	"Scenario.name":        "Identifies the scenario in reports. Default: the file name without its extension.",
	"Scenario.description": "What the scenario shows, in a sentence or two.",
	"Scenario.tags":        "Labels to select scenarios by, e.g. quick.",
	"Scenario.source":      "The article the documented values come from.",
	"Scenario.limit":       "Bounds the timeline: a step still running then is stopped and the scenario fails. Default 120s.",
	"Scenario.network":     "The lab network all hosts sit on.",
	"Scenario.networks":    "Makes the lab routed: networks by name, each a subnet on a bridge of its own; a host joins one (network), a router (links) several, and traffic between networks goes through the routers. Exclusive with network.",
	"Scenario.hosts":       "Hosts by name; each becomes a network namespace with one interface, eth0, on the lab network.",
	"Scenario.server":      "The MySQL server under test.",
	"Scenario.servers":     "Runs the scenario once per entry, each with a server of its own (flavor, engine or image) and everything else of server; the report names each instance by its server, e.g. \"lab-e/syn-dropped [mariadb/container]\".",
	"Scenario.captures":    "Hosts whose eth0 is captured to a pcap file for the whole timeline.",
	"Scenario.observe":     "What is sampled during the timeline.",
	"Scenario.timeline":    "The steps of the experiment.",
	"Scenario.checks":      "What must be true of the outcome.",
	"Scenario.matrix":      "Runs the scenario once per cell of its axes, each cell an instance with its own namespaces, named by its values (\"lab-e/syn-sweep [tcp_syn_retries=3 linear=0]\").",

	"Matrix.axes":   "The axes: each sets one value of the scenario to each of its values in turn.",
	"Matrix.cells":  "The cells to run instead of the product of the axes, each a value per axis name.",
	"Matrix.tags":   "Tags for the cells whose values match, e.g. long for the slow cells; a long cell is not quick.",
	"Axis.name":     "The axis's name in instance names and tables. Default: the last part of set.",
	"Axis.set":      "What the axis sets: HOST.net.ipv4.KEY (a host's sysctl; HOST.net.netfilter.KEY too), server.NAME (a server variable), STEP.iptables (an iptables step's whole rule), STEP.OPTION (a step's at, delay or skip, or an option its action lets an axis set: a client's connect_timeout, read_timeout, write_timeout or rcvbuf; a freeze's for; a throttle's limits and for; a load's bytes, for, block and sync_every), flavor or engine.",
	"Axis.values":   "The values, as the scenario would write them.",
	"Axis.labels":   "Names for the values, one per value in the same order, used in instance names and cell labels instead of the values (e.g. for a whole iptables rule); cells and tags may name a value by its label or by itself.",
	"CellTags.when": "Axis values a cell must have, by axis name.",
	"CellTags.tags": "The tags those cells get.",

	"Source.article": "File name of the article under shared/seeds.",
	"Source.title":   "The article's title.",
	"Source.kernel":  "The article's kernel, e.g. \"4.15.0-36-generic\".",
	"Source.server":  "The article's server, e.g. \"MySQL 5.7\".",

	"Network.subnet": "An IPv4 /24 used inside the run's namespaces only; nothing is routed to or from the host namespace. Default 10.89.0.0/24.",

	"Host.address": "Address inside the subnet (routed lab: the host's network's). Default: assigned in order of host names, from .10 up, skipping every address written anywhere.",
	"Host.network": "Routed lab: the network the host joins; required on every host but a router.",
	"Host.extra":   "More addresses on eth0, in the same subnet (more client source addresses); unique across the lab.",
	"Host.links":   "Makes the host a router of a routed lab: one link per network, eth0, eth1, ... in this order. A router has no network, address or extra of its own.",

	"RoutedNetwork.subnet": "The network's IPv4 subnet, /16 to /30, inside a private range, written as its network address, e.g. 10.89.1.0/24; subnets do not overlap.",

	"RouterLink.network": "The network the link joins.",
	"RouterLink.address": "The router's address on the network. Default: the network's first free address from .1 up, in order of router names.",
	"RouterLink.extra":   "More addresses on the link, e.g. an SNAT pool the router must answer ARP for.",
	"Host.sysctls":       "Written in the host's namespace before the timeline starts and read back; only per-namespace keys (net.*) are accepted.",

	"Server.host":      "The host the server runs on.",
	"Server.flavor":    "\"mysql\" (Oracle MySQL) or \"mariadb\". Default mysql.",
	"Server.engine":    "\"process\": mysqld from a cached root filesystem, chrooted in the host's namespace; \"container\": a Docker container whose network namespace is the host's. Default process, or container when image is set.",
	"Server.image":     "The container engine's image, e.g. \"mysql:8.4\". Default: the local image of the flavor's root filesystem (labrun/FLAVOR:VERSION). Implies engine container; the flavor defaults to the one the image's name says.",
	"Server.port":      "The port the server listens on. Default 3306.",
	"Server.variables": "Server variables, passed as --name=value.",
	"Server.setup":     "SQL run over the lab network once the server is ready, before the timeline starts.",
	"Server.disk":      "Puts the data directory on a filesystem of its own, made for the run (ext4 in a loop device), for the disk steps (freeze, throttle, load, latency) and observe.io. The container engine bind-mounts the same directory.",
	"Disk.size":        "The filesystem's size (its backing file is sparse). Default 1GiB.",
	"Disk.fuse":        "Puts a FUSE passthrough layer, served by labrun, between the server and the ext4, for the latency steps: the ext4 is mounted beside the data directory and the passthrough on it. Every file operation of the server then goes through labrun; freezes, loads and observe.io still act on the ext4 and its device, but a throttle cannot (the server's IO reaches the device from labrun's FUSE server) and is refused.",

	"ServerVariant.flavor":    "\"mysql\" or \"mariadb\". Default: the image's, or server's.",
	"ServerVariant.engine":    "\"process\" or \"container\". Default: container with an image, else server's.",
	"ServerVariant.image":     "The container engine's image, e.g. \"mariadb:11.4\"; implies engine container.",
	"ServerVariant.variables": "Server variables added to server's, winning over them.",

	"Observe.sockets": "TCP socket samplers, one per host.",

	"SocketObservation.host":  "The host whose sockets are sampled.",
	"SocketObservation.every": "The sampling period. Default 100ms.",
	"SocketObservation.port":  "Keeps sockets whose local or remote port is this. Default the server port.",

	"Step.name":                    "Names the step for after, checks and reports; unique.",
	"Step.at":                      "Start time relative to the start of the timeline. Exclusive with after.",
	"Step.after":                   "Names a step; this one starts when that one has finished, plus delay. Exclusive with at.",
	"Step.delay":                   "Wait after the step named by after has finished. Only with after.",
	"Step.host":                    "The host the action runs on; some actions have a default (client steps: client).",
	"Step.skip":                    "true: the step does not run; the steps after it start at its start time plus their delay, as if it had finished at once. An axis may set it (STEP.skip), to run a cell without a fault.",
	"Observe.processlist":          "Samples the server's threads (information_schema PROCESSLIST) and transactions (INNODB_TRX) over an admin connection from the server's own namespace.",
	"ProcesslistObservation.every": "The sampling period; default 200ms.",
	"Observe.io":                   "Samples the server disk's counters (server.disk): utilisation, await, queue depth, bytes read and written, as iostat -x shows them.",
	"IOObservation.every":          "The sampling period; default 100ms.",
	"Observe.census":               "Socket censuses, one per host: TCP sockets counted by state through sock_diag, and each TIME_WAIT followed with its timer, for thousands of short connections.",
	"CensusObservation.host":       "The host whose sockets are counted.",
	"CensusObservation.every":      "The sampling period; default 250ms.",
	"CensusObservation.port":       "Counts sockets whose local or remote port is this; default the server port.",
	"Observe.conntrack":            "Conntrack table samplers, one per host (a NAT router's): entries by TCP state.",
	"ConntrackObservation.host":    "The host whose conntrack table is sampled.",
	"ConntrackObservation.every":   "The sampling period; default 500ms.",
	"Expect.value":                 "The first column of the first row the step's last statement returned, as text (query_value).",
	"Expect.after":                 "ends_after: the step that must be over before the check's step finishes; for a client step whose server thread the processlist shows, over means that thread stopped running its statement. client_error with model session_end: the step whose idle session holds the lock the check's step waits on.",

	"Check.name":       "Names the check in reports; unique.",
	"Check.type":       "The check type.",
	"Check.step":       "The client step whose connection(s) the check looks at.",
	"Check.host":       "The host whose sockets, rules or capture the check reads.",
	"Check.flavors":    "Limits the check to these server flavors; empty means all.",
	"Check.expect":     "Overrides or completes what the kernel model predicts.",
	"Check.documented": "What the article reported, shown beside the model and the observation.",

	"Expect.count":     "How many (retransmissions, probes, packets); exact.",
	"Expect.intervals": "The intervals between successive events.",
	"Expect.code":      "The client error's MySQL code, e.g. 2003.",
	"Expect.sqlstate":  "The client error's SQLSTATE, e.g. HY000.",
	"Expect.errno":     "The system errno in the client error's parentheses, e.g. 110.",
	"Expect.contains":  "A substring of the client error's message.",
	"Expect.elapsed":   "How long the step took.",
	"Expect.model":     "Where the expected times come from; each check type knows its own: syn, synack, data, keepalive (tcpmodel's schedules; for client_error, the give-up time is the expected elapsed time), lock_wait_timeout (innodb_lock_wait_timeout), session_end (the server ends the idle session of a vanished client by TCP keepalive or wait_timeout, whichever comes first, from the step's end).",
	"Expect.state":     "socket_state: a TCP state, as the kernel names it; thread_state: the thread's State, or its Command when idle (Sleep); trx_state: the transaction's state in INNODB_TRX (RUNNING, LOCK WAIT).",
	"Expect.for":       "The least time the state must be seen.",
	"Expect.gone":      "Requires the state to disappear afterwards.",
	"Expect.tolerance": "Overrides the timing tolerance floor.",

	"Documented.value":   "The article's figure as it gave it: a number, a list, or text.",
	"Documented.note":    "Where in the article, or what it means.",
	"Documented.flavor":  "The server flavor the article ran, when the value only holds for it.",
	"Documented.version": "The server version the article ran, when the value only holds for it.",
}

// schemaRequired are the fields a scenario must write. Fields with a
// default are not among them even when their tag has no omitempty.
var schemaRequired = map[string]bool{
	"Scenario.hosts": true, "Scenario.server": true, "Scenario.timeline": true,
	"Scenario.checks":        true,
	"Server.host":            true,
	"RoutedNetwork.subnet":   true,
	"RouterLink.network":     true,
	"SocketObservation.host": true,
	"Step.name":              true,
	"Check.name":             true, "Check.type": true,
	"Matrix.axes": true, "Axis.set": true, "Axis.values": true, "CellTags.when": true, "CellTags.tags": true,
	"Documented.value": true,
}

// schemaExtra are keywords added to a field's schema: the closed sets and
// ranges validate.go enforces, and the defaults setDefaults applies.
func schemaExtra() map[string]jsonObj {
	port := func() jsonObj { return jsonObj{{"minimum", 1}, {"maximum", 65535}} }
	return map[string]jsonObj{
		"Scenario.limit":             {{"default", fmtDuration(DefaultLimit)}},
		"Network.subnet":             {{"default", DefaultSubnet}},
		"Host.sysctls":               {{"propertyNames", jsonObj{{"pattern", SysctlKey.String()}, {"not", jsonObj{{"enum", sortedNames(readOnlySysctls)}}}}}},
		"Scenario.networks":          {{"propertyNames", jsonObj{{"pattern", NetworkName.String()}}}, {"minProperties", 1}},
		"Host.links":                 {{"minItems", 1}},
		"Axis.labels":                {{"items", jsonObj{{"pattern", AxisLabel.String()}}}, {"uniqueItems", true}},
		"Server.flavor":              {{"enum", sortedNames(flavors)}, {"default", DefaultFlavor}},
		"Server.engine":              {{"enum", sortedNames(engines)}, {"default", DefaultEngine}},
		"Server.image":               {{"pattern", imageRef.String()}},
		"ServerVariant.flavor":       {{"enum", sortedNames(flavors)}},
		"ServerVariant.engine":       {{"enum", sortedNames(engines)}},
		"ServerVariant.image":        {{"pattern", imageRef.String()}},
		"ServerVariant.variables":    {{"propertyNames", jsonObj{{"pattern", variableName.String()}}}},
		"Scenario.servers":           {{"minItems", 1}},
		"Server.port":                append(port(), jsonKV{"default", DefaultPort}),
		"Server.variables":           {{"propertyNames", jsonObj{{"pattern", variableName.String()}}}},
		"SocketObservation.every":    {{"default", fmtDuration(DefaultSampleEvery)}},
		"SocketObservation.port":     port(),
		"IOObservation.every":        {{"default", fmtDuration(DefaultSampleEvery)}},
		"CensusObservation.every":    {{"default", fmtDuration(DefaultCensusEvery)}},
		"CensusObservation.port":     port(),
		"ConntrackObservation.every": {{"default", fmtDuration(DefaultConntrackEvery)}},
		"Disk.size":                  {{"default", Bytes(DefaultDiskSize).String()}},
		"Check.type":                 {{"enum", CheckNames()}},
		"Check.flavors":              {{"items", jsonObj{{"enum", sortedNames(flavors)}}}},
		"Expect.count":               {{"minimum", 0}},
		"Documented.flavor":          {{"enum", sortedNames(flavors)}},
		"Scenario.hosts":             {{"propertyNames", jsonObj{{"pattern", HostName.String()}}}, {"minProperties", 1}},
		"Scenario.timeline":          {{"minItems", 1}},
		// A scenario without checks could only pass on nothing; the
		// loader refuses it, and so does the editor.
		"Scenario.checks": {{"minItems", 1}},
	}
}

// actionRequired says whether a field of an action's own type (declared
// outside this package, so schemaRequired cannot name it) must be written:
// its yaml tag has no omitempty, which is how an action says that its
// validation refuses the field's zero value (a client's kind, a stream's
// pause). The format's own types list theirs in schemaRequired instead,
// because several of them have a default despite no omitempty.
func actionRequired(t reflect.Type, sf reflect.StructField) bool {
	if t.PkgPath() == stepType.PkgPath() {
		return false
	}
	tag := sf.Tag.Get("yaml")
	_, opts, _ := strings.Cut(tag, ",")
	for _, o := range strings.Split(opts, ",") {
		if o == "omitempty" {
			return false
		}
	}
	return true
}

// typeExtra are keywords added to a type's schema for rules between its
// fields: a step has exactly one of the registered actions, and a check's
// expect takes the keys and models its kind reads.
func typeExtra() map[string]jsonObj {
	var oneAction []any
	for _, name := range ActionNames() {
		oneAction = append(oneAction, jsonObj{{"required", []string{name}}})
	}
	var perKind []any
	for _, k := range CheckKinds() {
		keys := append(append([]string{}, k.Expect...), k.Required...)
		sort.Strings(keys)
		var props jsonObj
		if len(k.Models) > 0 {
			props = append(props, jsonKV{"model", jsonObj{{"enum", k.Models}}})
		}
		for _, f := range sortedNames(k.ExpectSchema) {
			props = append(props, jsonKV{f, mapObj(k.ExpectSchema[f])})
		}
		expect := jsonObj{{"propertyNames", jsonObj{{"enum", append([]string{}, keys...)}}}}
		if len(keys) == 0 {
			expect = jsonObj{{"maxProperties", 0}}
		}
		if len(props) > 0 {
			expect = append(expect, jsonKV{"properties", props})
		}
		if len(k.Required) > 0 {
			expect = append(expect, jsonKV{"required", k.Required})
		}
		then := jsonObj{{"properties", jsonObj{{"expect", expect}}}}
		var req []string
		if len(k.Required) > 0 {
			req = append(req, "expect")
		}
		if k.Step == StepConnection || k.Step == StepAny {
			req = append(req, "step")
		}
		if len(req) > 0 {
			then = append(then, jsonKV{"required", req})
		}
		perKind = append(perKind, jsonObj{
			{"if", jsonObj{{"properties", jsonObj{{"type", jsonObj{{"const", k.Name}}}}}, {"required", []string{"type"}}}},
			{"then", then},
		})
	}
	return map[string]jsonObj{
		"Step": {
			{"allOf", []any{
				jsonObj{{"oneOf", oneAction}},
				jsonObj{{"oneOf", []any{
					jsonObj{{"required", []string{"at"}}},
					jsonObj{{"required", []string{"after"}}},
				}}},
			}},
			{"dependentRequired", jsonObj{{"delay", []string{"after"}}}},
		},
		"Check": {{"allOf", perKind}},
		// A router has its networks and addresses in its links.
		"Host": {{"dependentSchemas", jsonObj{{"links", jsonObj{{"properties", jsonObj{
			{"network", false}, {"address", false}, {"extra", false}}}}}}}},
		"Scenario": routedSchema(),
	}
}

// routedSchema says what a routed lab (networks) asks of its hosts: network
// and networks are exclusive; with networks every host has a network or
// links, without them none has either.
func routedSchema() jsonObj {
	hosts := func(v jsonObj) jsonKV {
		return jsonKV{"hosts", jsonObj{{"additionalProperties", v}}}
	}
	joins := []any{jsonObj{{"required", []string{"network"}}}, jsonObj{{"required", []string{"links"}}}}
	return jsonObj{
		{"dependentSchemas", jsonObj{{"networks", jsonObj{{"properties", jsonObj{
			{"network", false},
			hosts(jsonObj{{"type", "object"}, {"anyOf", joins}}),
		}}}}}},
		{"if", jsonObj{{"not", jsonObj{{"required", []string{"networks"}}}}}},
		{"then", jsonObj{{"properties", jsonObj{hosts(jsonObj{{"not", jsonObj{{"type", "object"}, {"anyOf", joins}}}})}}}},
	}
}

// mapObj turns a map of keywords into an ordered object, sorted by key.
func mapObj(m map[string]any) jsonObj {
	var o jsonObj
	for _, k := range sortedNames(m) {
		v := m[k]
		if sub, ok := v.(map[string]any); ok {
			v = mapObj(sub)
		}
		o = append(o, jsonKV{k, v})
	}
	return o
}

// Schema returns the JSON Schema (draft 2020-12) of scenario files, made
// from the Go types by reflection so that it cannot drift from what the
// loader decodes. scenarios/schema.json is its output (go generate).
func Schema() ([]byte, error) {
	g := &schemaGen{defs: map[string]jsonObj{}, extra: schemaExtra(), typeExtra: typeExtra(),
		fieldDocs: map[string]string{}, typeDocs: map[string]string{}}
	for k, v := range fieldDocs {
		g.fieldDocs[k] = v
	}
	for k, v := range typeDocs {
		g.typeDocs[k] = v
	}
	for _, k := range Actions() {
		for f, d := range k.FieldDocs {
			g.fieldDocs[f] = d
		}
		for t, d := range k.TypeDocs {
			g.typeDocs[t] = d
		}
		for f, kw := range k.FieldSchema {
			g.extra[f] = append(g.extra[f], mapObj(kw)...)
		}
	}
	root := g.structSchema(reflect.TypeOf(Scenario{}))
	doc := jsonObj{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"title", "labrun scenario"},
	}
	doc = append(doc, root...)
	var names []string
	for name := range g.defs {
		names = append(names, name)
	}
	sort.Strings(names)
	var defs jsonObj
	for _, name := range names {
		defs = append(defs, jsonKV{name, g.defs[name]})
	}
	doc = append(doc, jsonKV{"$defs", defs})
	if len(g.missing) > 0 {
		return nil, fmt.Errorf("schema: no description for %s", strings.Join(g.missing, ", "))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return b.Bytes(), nil
}

type schemaGen struct {
	defs      map[string]jsonObj
	extra     map[string]jsonObj
	typeExtra map[string]jsonObj
	fieldDocs map[string]string
	typeDocs  map[string]string
	missing   []string
}

var durationReflectType = reflect.TypeOf(Duration(0))

var scalarType = reflect.TypeOf(Scalar(""))

var bytesType = reflect.TypeOf(Bytes(0))

// durationValuer is implemented by an action's own type that is a duration
// in YAML (sleep), so that the schema says so.
var durationValuer = reflect.TypeOf((*interface{ Duration() Duration })(nil)).Elem()

// typeSchema returns the schema of a value of type t.
func (g *schemaGen) typeSchema(t reflect.Type) jsonObj {
	if t == scalarType {
		return jsonObj{{"type", []string{"string", "number", "boolean"}}}
	}
	if t == bytesType {
		if _, ok := g.defs["Bytes"]; !ok {
			g.defs["Bytes"] = jsonObj{
				{"description", g.typeDocs["Bytes"]},
				{"anyOf", []any{jsonObj{{"type", "integer"}, {"minimum", 0}}, jsonObj{{"type", "string"}, {"pattern", bytesPattern}}}},
			}
		}
		return jsonObj{{"$ref", "#/$defs/Bytes"}}
	}
	if t == durationReflectType || t.Implements(durationValuer) {
		if _, ok := g.defs["Duration"]; !ok {
			g.defs["Duration"] = jsonObj{
				{"description", g.typeDocs["Duration"]},
				{"type", "string"},
				{"pattern", durationPattern},
			}
		}
		return jsonObj{{"$ref", "#/$defs/Duration"}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.typeSchema(t.Elem())
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = nil // breaks recursion
			g.defs[name] = g.structSchema(t)
		}
		return jsonObj{{"$ref", "#/$defs/" + name}}
	case reflect.Map:
		v := g.typeSchema(t.Elem())
		if t.Elem().Kind() == reflect.Pointer {
			// "client:" with nothing under it is a host with defaults.
			v = jsonObj{{"anyOf", []any{v, jsonObj{{"type", "null"}}}}}
		}
		if t.Elem().Kind() == reflect.String {
			// YAML writes "net.ipv4.tcp_syn_retries: 3" with a number, and
			// the loader takes any scalar as a string.
			v = jsonObj{{"type", []string{"string", "number", "boolean"}}}
		}
		return jsonObj{{"type", "object"}, {"additionalProperties", v}}
	case reflect.Slice:
		return jsonObj{{"type", "array"}, {"items", g.typeSchema(t.Elem())}}
	case reflect.String:
		return jsonObj{{"type", "string"}}
	case reflect.Bool:
		return jsonObj{{"type", "boolean"}}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return jsonObj{{"type", "integer"}}
	case reflect.Float32, reflect.Float64:
		return jsonObj{{"type", "number"}}
	}
	// any: the article's value may be a number, a list or text.
	return jsonObj{}
}

func (g *schemaGen) structSchema(t reflect.Type) jsonObj {
	var props jsonObj
	var required []string
	for _, sf := range reflect.VisibleFields(t) {
		name, ok := yamlName(sf)
		if !ok {
			continue
		}
		key := t.Name() + "." + name
		doc, ok := g.fieldDocs[key]
		if !ok {
			g.missing = append(g.missing, key)
		}
		s := jsonObj{{"description", doc}}
		ts := g.typeSchema(sf.Type)
		extra := g.extra[key]
		for _, k := range ts {
			// An "items" in extra refines the element schema instead of
			// replacing it.
			if k.k == "items" {
				if e, ok := extra.get("items"); ok {
					k.v = append(append(jsonObj{}, k.v.(jsonObj)...), e.(jsonObj)...)
				}
			}
			s = append(s, k)
		}
		for _, k := range extra {
			if _, ok := ts.get(k.k); !ok {
				s = append(s, k)
			}
		}
		props = append(props, jsonKV{name, s})
		if schemaRequired[key] || actionRequired(t, sf) {
			required = append(required, name)
		}
	}
	if t == stepType {
		// Each registered action is one more key of a step, its value the
		// action's own type.
		for _, k := range Actions() {
			v := jsonObj{{"description", k.Doc}}
			v = append(v, g.typeSchema(reflect.TypeOf(k.New()).Elem())...)
			v = append(v, mapObj(k.Schema)...)
			props = append(props, jsonKV{k.Name, v})
		}
	}
	s := jsonObj{
		{"description", g.typeDocs[t.Name()]},
		{"type", "object"},
		{"properties", props},
		{"additionalProperties", false},
	}
	if len(required) > 0 {
		s = append(s, jsonKV{"required", required})
	}
	s = append(s, g.typeExtra[t.Name()]...)
	return s
}

// jsonObj is a JSON object that keeps its keys in the order written, so that
// the schema reads like the Go types and diffs stay small.
type jsonObj []jsonKV

type jsonKV struct {
	k string
	v any
}

func (o jsonObj) get(k string) (any, bool) {
	for _, e := range o {
		if e.k == k {
			return e.v, true
		}
	}
	return nil, false
}

func (o jsonObj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e.v); err != nil {
			return nil, err
		}
		// Encode ends with a newline; Indent later lays the object out.
		b.Truncate(b.Len() - 1)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
