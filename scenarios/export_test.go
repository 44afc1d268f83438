package scenarios

// Internals the external tests (package scenarios_test, which imports the
// registries of actions and checks) look at.
var (
	JoinKey         = joinKey
	DurationPattern = durationPattern
	FieldDocs       = fieldDocs
	TypeDocs        = typeDocs
	SchemaRequired  = schemaRequired
	SchemaExtra     = schemaExtra
)

func SortedNames[V any](m map[string]V) []string { return sortedNames(m) }

// Root is the parsed document of a loaded scenario.
func (s *Scenario) Root() any { return s.root }

// SplitPath returns the names of a path's segments ("" for an index).
func SplitPath(path string) ([]string, bool) {
	segs, ok := splitPath(path)
	var out []string
	for _, s := range segs {
		out = append(out, s.name)
	}
	return out, ok
}
