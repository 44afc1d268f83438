package capture

import "testing"

func TestDumpTmp(t *testing.T) {
	for _, f := range fixtures {
		f.trace().write(t, "/tmp/fx/"+f.name+".pcap")
	}
}
