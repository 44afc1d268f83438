package scenarios

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Bytes is a size in bytes, written as an integer or with a binary unit:
// "512KiB", "4MiB", "1GiB".
type Bytes int64

// bytesPattern is what a size may be, for the schema and the loader.
const bytesPattern = `^[0-9]+(\.[0-9]+)?\s*(B|KiB|MiB|GiB)?$`

var bytesRe = regexp.MustCompile(bytesPattern)

var byteUnits = map[string]float64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

// ParseBytes parses a size with an optional binary unit. Decimal units (MB,
// KB) are refused: whether they mean 1000 or 1024 would be a guess.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	m := bytesRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("bad size %q: want bytes, or a number with KiB, MiB or GiB", s)
	}
	num := strings.TrimSpace(strings.TrimSuffix(s, m[2]))
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	v := f * byteUnits[m[2]]
	if v > 1<<50 {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return int64(v), nil
}

// UnmarshalYAML accepts an integer or a string with a binary unit.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("bad size: want a number of bytes or a string such as \"4MiB\"")
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		return err
	}
	*b = Bytes(v)
	return nil
}

// String writes the size with the largest binary unit that divides it.
func (b Bytes) String() string {
	for _, u := range []string{"GiB", "MiB", "KiB"} {
		d := int64(byteUnits[u])
		if b != 0 && int64(b)%d == 0 {
			return fmt.Sprintf("%d%s", int64(b)/d, u)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML and MarshalJSON write the size as it would be written.
func (b Bytes) MarshalYAML() (any, error) { return b.String(), nil }

func (b Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + b.String() + `"`), nil }
