package scenarios

// Instances expands a scenario into one scenario per server it runs on:
// the entries of its servers list, or its server alone. flavors and
// engines, when given (the command line's), choose instead every pair of a
// flavor and an engine (one left empty keeps the scenario's own), keeping
// a listed server, with its image and variables, where one matches the
// pair. An instance shares everything but its name and server with sc; its
// name carries its server ("lab-e/syn-dropped [mariadb/container]") when
// the scenario runs on more than one.
func Instances(sc *Scenario, flavors, engines []string) []*Scenario {
	variants := sc.Servers
	if len(variants) == 0 {
		variants = []ServerVariant{{Flavor: sc.Server.Flavor, Engine: sc.Server.Engine, Image: sc.Server.Image}}
	}
	if len(flavors) > 0 || len(engines) > 0 {
		if len(flavors) == 0 {
			flavors = distinct(variants, func(v ServerVariant) string { return v.Flavor })
		}
		if len(engines) == 0 {
			engines = distinct(variants, func(v ServerVariant) string { return v.Engine })
		}
		var chosen []ServerVariant
		for _, f := range flavors {
			for _, e := range engines {
				matched := false
				for _, v := range variants {
					if v.Flavor == f && v.Engine == e {
						chosen = append(chosen, v)
						matched = true
					}
				}
				if !matched {
					chosen = append(chosen, ServerVariant{Flavor: f, Engine: e})
				}
			}
		}
		variants = chosen
	}
	out := make([]*Scenario, 0, len(variants))
	for _, v := range variants {
		inst := *sc
		inst.Servers = nil
		inst.Server.Flavor, inst.Server.Engine, inst.Server.Image = v.Flavor, v.Engine, v.Image
		if len(v.Variables) > 0 {
			vars := make(map[string]string, len(sc.Server.Variables)+len(v.Variables))
			for k, val := range sc.Server.Variables {
				vars[k] = val
			}
			for k, val := range v.Variables {
				vars[k] = val
			}
			inst.Server.Variables = vars
		}
		if len(variants) > 1 {
			inst.Name = sc.Name + " [" + v.Label() + "]"
		}
		out = append(out, &inst)
	}
	return out
}

// distinct returns the values of key over vs, in order of first
// appearance.
func distinct(vs []ServerVariant, key func(ServerVariant) string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range vs {
		if k := key(v); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
