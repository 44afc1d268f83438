package reports

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Redacted replaces a secret in a redacted report.
const Redacted = "[redacted]"

// Redact replaces every occurrence of the given secrets (the run's random
// server passwords) in the report's free text and values, so a client error
// or a log line that echoes a DSN cannot leak one into report.json, JUnit or
// HTML. Call it once, before writing. Empty secrets are ignored.
func (r *Report) Redact(secrets ...string) {
	var pairs []string
	for _, s := range secrets {
		if s != "" {
			pairs = append(pairs, s, Redacted)
		}
	}
	if len(pairs) == 0 {
		return
	}
	rd := redactor{rep: strings.NewReplacer(pairs...), secrets: secrets}
	for _, s := range r.Scenarios {
		s.Error = rd.rep.Replace(s.Error)
		s.SkipReason = rd.rep.Replace(s.SkipReason)
		for k, v := range s.Source {
			s.Source[k] = rd.rep.Replace(v)
		}
		for _, st := range s.Steps {
			st.Error = rd.rep.Replace(st.Error)
			for k, v := range st.Detail {
				st.Detail[k] = rd.value(v)
			}
		}
		for _, c := range s.Checks {
			c.Documented = rd.value(c.Documented)
			c.Expected = rd.value(c.Expected)
			c.Observed = rd.value(c.Observed)
			c.Tolerance = rd.value(c.Tolerance)
			c.Finding = rd.rep.Replace(c.Finding)
			c.Explain = rd.rep.Replace(c.Explain)
			c.Message = rd.rep.Replace(c.Message)
			for i, e := range c.Evidence {
				c.Evidence[i] = rd.rep.Replace(e)
			}
		}
	}
}

type redactor struct {
	rep     *strings.Replacer
	secrets []string
}

// value redacts a free-form value. Values of other types are checked
// through their JSON form, the form that gets written; one that holds a
// secret is replaced by its redacted JSON form, which Render shows alike.
func (rd redactor) value(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return rd.rep.Replace(x)
	case []string:
		out := make([]string, len(x))
		for i, s := range x {
			out[i] = rd.rep.Replace(s)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rd.value(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = rd.value(e)
		}
		return out
	}
	b, err := json.Marshal(v)
	if err != nil || !rd.holdsSecret(b) {
		return v
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		// A value that holds a secret but cannot be read back is dropped
		// whole rather than written.
		return Redacted
	}
	return rd.value(g)
}

func (rd redactor) holdsSecret(b []byte) bool {
	for _, s := range rd.secrets {
		if s == "" {
			continue
		}
		// A secret appears in JSON as written or escaped, depending on its
		// characters; look for both.
		esc, _ := json.Marshal(s)
		if bytes.Contains(b, []byte(s)) || bytes.Contains(b, esc[1:len(esc)-1]) {
			return true
		}
	}
	return false
}
