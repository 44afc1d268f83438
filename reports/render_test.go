package reports

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

type stringer struct{}

func (stringer) String() string { return "as\nstringer" }

type tolerance struct {
	Floor    string  `json:"floor"`
	Fraction float64 `json:"fraction"`
}

type docShape struct {
	Value  any    `json:"value"`
	Note   string `json:"note,omitempty"`
	Flavor string `json:"flavor,omitempty"`
}

func TestRender(t *testing.T) {
	var nilErr *ClientError
	six := 6
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, "-"},
		{"nil pointer", nilErr, "-"},
		{"pointer", &six, "6"},
		{"string", "Sending to\n  client", "Sending to client"},
		{"bool", true, "true"},
		{"int", 11, "11"},
		{"uint", uint8(3), "3"},
		{"integral float", 7.0, "7"},
		{"float", 1.23456, "1.235"},
		{"small float", 0.00042, "0.00042"},
		{"duration", 1500 * time.Millisecond, "1.5s"},
		{"duration rounded", 19513427 * time.Microsecond, "19.513s"},
		{"short duration kept", 1500 * time.Microsecond, "1.5ms"},
		{"durations", []time.Duration{time.Second, time.Second, 2 * time.Second}, "1s 1s 2s"},
		{"intervals", []float64{1, 2.004}, "1.00 2.00 s"},
		{"no intervals", []float64{}, "none"},
		{"ints", []int{1, 3, 7}, "1 3 7"},
		{"strings with spaces", []string{"Sending to client", "Writing to net"}, "Sending to client, Writing to net"},
		{"client error", ClientError{Code: 2003, SQLState: "HY000", Errno: 110}, "ERROR 2003 (110)"},
		{"client error pointer", &ClientError{Code: 1205}, "ERROR 1205"},
		{"sqlstate only", ClientError{SQLState: "HY000"}, "ERROR SQLSTATE HY000"},
		{"message only", ClientError{Message: "dial tcp: i/o timeout"}, "ERROR: dial tcp: i/o timeout"},
		{"no error", ClientError{}, "no error"},
		{"client error map", map[string]any{"code": 2013.0, "errno": 110.0, "message": "Lost"}, "ERROR 2013 (110)"},
		{"documented", Documented{Value: 6, Note: "n", Flavor: "mysql", Version: "5.7"}, "6 (mysql 5.7)"},
		{"documented list", Documented{Value: []any{1.0, 3.0, 7.0}}, "1 3 7"},
		{"documented struct", docShape{Value: "Sending to client", Flavor: "mysql"}, "Sending to client (mysql)"},
		{"map sorted", map[string]any{"b": 2, "a": "x"}, "a=x b=2"},
		{"string map", map[string]string{"z": "1", "y": "2"}, "y=2 z=1"},
		{"empty map", map[string]any{}, "-"},
		{"struct", tolerance{Floor: "50ms", Fraction: 0.125}, "floor=50ms fraction=0.125"},
		{"stringer", stringer{}, "as stringer"},
		{"error", errors.New("connect: connection\ttimed out"), "connect: connection timed out"},
		{"json number", json.Number("42"), "42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Render(tt.in); got != tt.want {
				t.Errorf("Render(%#v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDocumentedNote(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{Documented{Value: 1, Note: "a"}, "a"},
		{&Documented{Value: 1, Note: "b"}, "b"},
		{map[string]any{"value": 1.0, "note": "c"}, "c"},
		{docShape{Value: 1, Note: "d"}, "d"},
		{map[string]any{"other": 1.0, "note": "e"}, ""},
		{6, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := documentedNote(tt.in); got != tt.want {
			t.Errorf("documentedNote(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
