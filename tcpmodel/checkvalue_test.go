package tcpmodel

import "testing"

func TestCheckValue(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{KeySynRetries, "3", ""},
		{KeySynRetries, "0", "out of the kernel's range 1 to 127"},
		{KeySynRetries, "128", "out of the kernel's range 1 to 127"},
		{KeyRetries2, "x", "want an integer"},
		{KeyRetries2, "-1", "want 0 or more"},
		{KeyRetries2, "40", ""},
		{KeyRTOMaxMs, "999", "out of the kernel's range 1000 to 120000"},
		{KeyKeepaliveTime, " 60 ", ""},
		// Keys the model does not read are the kernel's to judge.
		{"net.ipv4.ip_local_port_range", "1024 2048", ""},
	}
	for _, tt := range tests {
		err := CheckValue(tt.key, tt.value)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("CheckValue(%s, %q) = %q, want %q", tt.key, tt.value, got, tt.want)
		}
	}
}
