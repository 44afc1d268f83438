package scenarios_test

import (
	_ "github.com/labrun/labrun/actions"
	_ "github.com/labrun/labrun/checks"
	. "github.com/labrun/labrun/scenarios"
	"strings"
	"testing"
)

const matrixBase = `
hosts:
  client:
  server:
server:
  host: server
  variables: {wait_timeout: "5", max_connections: "20"}
#server
timeline:
  - name: connect
    at: 1s
    client: {kind: cli}
checks:
  - {name: fails, type: client_error, step: connect, expect: {code: 2003}}
`

func TestInstances(t *testing.T) {
	tests := []struct {
		name    string
		server  string // added to matrixBase's server
		yaml    string // appended to matrixBase
		flavors []string
		engines []string
		// want: one line per instance, "name | flavor engine image | variables"
		want []string
	}{
		{"server alone", "", "", nil, nil,
			[]string{"m | mysql process  | max_connections=20 wait_timeout=5"}},
		{"server with an image", "  image: mariadb:11.4\n", "", nil, nil,
			[]string{"m | mariadb container mariadb:11.4 | max_connections=20 wait_timeout=5"}},
		{"servers list", "", `servers:
  - {flavor: mysql}
  - {flavor: mariadb, engine: container, variables: {wait_timeout: "7"}}
  - image: mysql:8.4
`, nil, nil, []string{
			"m [mysql/process] | mysql process  | max_connections=20 wait_timeout=5",
			"m [mariadb/container] | mariadb container  | max_connections=20 wait_timeout=7",
			"m [mysql:8.4] | mysql container mysql:8.4 | max_connections=20 wait_timeout=5",
		}},
		{"command line flavors", "", "", []string{"mysql", "mariadb"}, nil, []string{
			"m [mysql/process] | mysql process  | max_connections=20 wait_timeout=5",
			"m [mariadb/process] | mariadb process  | max_connections=20 wait_timeout=5",
		}},
		// One instance keeps the scenario's name, as before matrices.
		{"command line one flavor", "", "", []string{"mariadb"}, nil,
			[]string{"m | mariadb process  | max_connections=20 wait_timeout=5"}},
		{"command line engines keep the flavor", "  flavor: mariadb\n", "", nil, []string{"process", "container"}, []string{
			"m [mariadb/process] | mariadb process  | max_connections=20 wait_timeout=5",
			"m [mariadb/container] | mariadb container  | max_connections=20 wait_timeout=5",
		}},
		// A listed server that matches a chosen pair is kept with its
		// image and variables; pairs nobody listed get a plain server.
		{"command line over a list", "", `servers:
  - {image: mysql:8.4, variables: {max_connections: "99"}}
  - {flavor: mariadb}
`, []string{"mysql"}, []string{"container", "process"}, []string{
			"m [mysql:8.4] | mysql container mysql:8.4 | max_connections=99 wait_timeout=5",
			"m [mysql/process] | mysql process  | max_connections=20 wait_timeout=5",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := LoadBytes("m.yaml", []byte(strings.Replace(matrixBase, "#server\n", tt.server, 1)+tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, inst := range Instances(sc, tt.flavors, tt.engines) {
				sv := inst.Server
				var vars []string
				for _, k := range SortedNames(sv.Variables) {
					vars = append(vars, k+"="+sv.Variables[k])
				}
				got = append(got, inst.Name+" | "+sv.Flavor+" "+sv.Engine+" "+sv.Image+" | "+strings.Join(vars, " "))
				if len(inst.Servers) != 0 {
					t.Errorf("%s: instance still lists servers", inst.Name)
				}
				if inst.Timeline[0] != sc.Timeline[0] {
					t.Errorf("%s: instance does not share the timeline", inst.Name)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("instances:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// The scenario itself is left as it was loaded.
			if sc.Server.Variables["wait_timeout"] != "5" || sc.Name != "m" {
				t.Errorf("Instances changed the scenario: %+v", sc.Server)
			}
		})
	}
}
