package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxDepth bounds how far Render descends into nested values; a table cell
// deeper than this is unreadable anyway.
const maxDepth = 6

// Render shows a documented, expected or observed value compactly, on one
// line, for text output:
//
//   - nil and nil pointers: "-"
//   - time.Duration: "1.5s", rounded to the millisecond above 10ms
//   - []time.Duration: "1s 1s 2s"
//   - []float64, taken as intervals in seconds: "1.00 2.00 s"
//   - other numbers: integers as such, fractions with at most 3 decimals
//   - ClientError, or any map or struct with only its fields: "ERROR 2003 (110)"
//   - Documented, or any map or struct with only its fields: "6 (mysql 5.7)"
//   - maps and structs: "k=v" pairs in sorted key order
//   - other slices: the elements separated by spaces
//   - fmt.Stringer and error: their text, on one line
//
// Values decoded back from report.json (map[string]any, []any, float64)
// render the same way as the values they were written from, except that a
// list of seconds loses its type and shows without the unit.
func Render(v any) string { return render(v, 0) }

func render(v any, depth int) string {
	if depth > maxDepth {
		return "..."
	}
	if v == nil {
		return "-"
	}
	rv := reflect.ValueOf(v)
	if (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) && rv.IsNil() {
		return "-"
	}
	switch x := v.(type) {
	case string:
		return oneLine(x)
	case bool:
		return strconv.FormatBool(x)
	case time.Duration:
		return formatDuration(x)
	case []time.Duration:
		if len(x) == 0 {
			return "none"
		}
		parts := make([]string, len(x))
		for i, d := range x {
			parts[i] = formatDuration(d)
		}
		return strings.Join(parts, " ")
	case []float64:
		if len(x) == 0 {
			return "none"
		}
		parts := make([]string, len(x))
		for i, f := range x {
			parts[i] = strconv.FormatFloat(f, 'f', 2, 64)
		}
		return strings.Join(parts, " ") + " s"
	case json.Number:
		return x.String()
	case ClientError:
		return x.String()
	case *ClientError:
		return x.String()
	case Documented:
		return renderDocumented(x.Value, x.Flavor, x.Version, depth)
	case *Documented:
		return renderDocumented(x.Value, x.Flavor, x.Version, depth)
	case error:
		return oneLine(x.Error())
	case fmt.Stringer:
		return oneLine(x.String())
	case map[string]any:
		return renderMap(x, depth)
	}
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		return render(rv.Elem().Interface(), depth+1)
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return formatFloat(rv.Float())
	case reflect.String:
		return oneLine(rv.String())
	case reflect.Slice, reflect.Array:
		return renderList(rv, depth)
	case reflect.Map:
		m := make(map[string]any, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			m[fmt.Sprint(iter.Key().Interface())] = iter.Value().Interface()
		}
		return renderMap(m, depth)
	case reflect.Struct:
		// A struct renders through its JSON form: that honours its field
		// names and omitempty, and makes a struct and the same value read
		// back from report.json look alike.
		b, err := json.Marshal(v)
		if err != nil {
			return oneLine(fmt.Sprint(v))
		}
		var g any
		if err := json.Unmarshal(b, &g); err != nil {
			return oneLine(fmt.Sprint(v))
		}
		return render(g, depth+1)
	}
	return oneLine(fmt.Sprint(v))
}

// String renders the error the way the mysql client starts its message,
// with the errno (the kernel's reason, 110 for a timeout) in parentheses;
// the SQLSTATE is left out because the code already implies it.
func (e ClientError) String() string {
	s := "ERROR"
	if e.Code != 0 {
		s += " " + strconv.Itoa(e.Code)
	}
	if e.Errno != 0 {
		s += " (" + strconv.Itoa(e.Errno) + ")"
	}
	if e.Code == 0 && e.Errno == 0 {
		switch {
		case e.SQLState != "":
			s += " SQLSTATE " + e.SQLState
		case e.Message != "":
			s += ": " + oneLine(e.Message)
		default:
			return "no error"
		}
	}
	return s
}

func renderDocumented(value any, flavor, version string, depth int) string {
	s := render(value, depth+1)
	if server := strings.TrimSpace(flavor + " " + version); server != "" {
		s += " (" + server + ")"
	}
	return s
}

// Keys of the two shapes a map can take when Render recognises it; a map
// with any other key is shown as plain pairs.
var (
	clientErrorKeys = []string{"code", "sqlstate", "errno", "message"}
	documentedKeys  = []string{"value", "note", "flavor", "version"}
)

func renderMap(m map[string]any, depth int) string {
	if len(m) == 0 {
		return "-"
	}
	if onlyKeys(m, clientErrorKeys) && (m["code"] != nil || m["errno"] != nil) {
		return ClientError{
			Code:     toInt(m["code"]),
			SQLState: toString(m["sqlstate"]),
			Errno:    toInt(m["errno"]),
			Message:  toString(m["message"]),
		}.String()
	}
	if _, ok := m["value"]; ok && onlyKeys(m, documentedKeys) {
		return renderDocumented(m["value"], toString(m["flavor"]), toString(m["version"]), depth)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + render(m[k], depth+1)
	}
	return strings.Join(parts, " ")
}

func renderList(rv reflect.Value, depth int) string {
	if rv.Len() == 0 {
		return "none"
	}
	parts := make([]string, rv.Len())
	spaced := false
	for i := range rv.Len() {
		parts[i] = render(rv.Index(i).Interface(), depth+1)
		spaced = spaced || strings.Contains(parts[i], " ")
	}
	// Elements that contain spaces themselves need a clearer separator.
	if spaced {
		return strings.Join(parts, ", ")
	}
	return strings.Join(parts, " ")
}

func onlyKeys(m map[string]any, allowed []string) bool {
	for k := range m {
		if !slices.Contains(allowed, k) {
			return false
		}
	}
	return true
}

func toInt(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case int:
		return x
	case json.Number:
		n, _ := x.Int64()
		return int(n)
	}
	return 0
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// formatDuration rounds to the millisecond above 10ms: kernel timers are
// late by tens of milliseconds, so finer digits are noise in a table.
func formatDuration(d time.Duration) string {
	if d >= 10*time.Millisecond || d <= -10*time.Millisecond {
		d = d.Round(time.Millisecond)
	}
	return d.String()
}

// formatFloat writes integers without a fraction and other values with at
// most three decimals, or three significant digits when smaller than that.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return strconv.FormatFloat(f, 'g', -1, 64)
	case f == math.Trunc(f) && math.Abs(f) < 1e15:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case math.Abs(f) < 0.001:
		return strconv.FormatFloat(f, 'g', 3, 64)
	}
	s := strconv.FormatFloat(f, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// oneLine collapses runs of whitespace, newlines included, so a value never
// breaks a table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
