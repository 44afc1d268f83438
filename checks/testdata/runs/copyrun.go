//go:build ignore

// copyrun copies what a labrun run saved for one scenario into this
// directory, small enough to keep in the repository:
//
//	go run ./checks/testdata/runs/copyrun.go REPORTDIR/lab-e_syn-dropped checks/testdata/runs/NAME
//
// scenario.yaml is copied as it is, observations.json with its whitespace
// removed (the values are untouched), and each pcap observations.json
// names is copied as it is when it is under 200 KB, else with every frame
// cut after its TCP header (a payload of 5 bytes or less, a COM_QUIT, is kept): the analysis reads lengths from the IP header,
// never the payload, so the verdicts are the same.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// maxPcap is the size above which a pcap is cut to its headers.
const maxPcap = 200 << 10

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run copyrun.go SRC DST")
		os.Exit(2)
	}
	if err := copyRun(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "copyrun:", err)
		os.Exit(1)
	}
}

func copyRun(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	sc, err := os.ReadFile(filepath.Join(src, "scenario.yaml"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "scenario.yaml"), sc, 0o644); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(src, "observations.json"))
	if err != nil {
		return err
	}
	var obs struct {
		Pcaps map[string]string `json:"pcaps"`
	}
	if err := json.Unmarshal(raw, &obs); err != nil {
		return err
	}
	var small bytes.Buffer
	if err := json.Compact(&small, raw); err != nil {
		return err
	}
	small.WriteByte('\n')
	if err := os.WriteFile(filepath.Join(dst, "observations.json"), small.Bytes(), 0o644); err != nil {
		return err
	}
	for host, name := range obs.Pcaps {
		if filepath.Base(name) != name {
			return fmt.Errorf("pcap of %s: %q is not a file name", host, name)
		}
		in, out := filepath.Join(src, name), filepath.Join(dst, name)
		st, err := os.Stat(in)
		if err != nil {
			return err
		}
		if st.Size() <= maxPcap {
			b, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			continue
		}
		if err := cut(in, out); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	return nil
}

// cut copies a pcap keeping, of each frame, its link, IP and TCP headers;
// the original length stays in each record. Frames that are not TCP over
// IPv4 or IPv6 are kept whole.
func cut(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	var w *pcapgo.Writer
	if r.Resolution().Exponent == -9 {
		w = pcapgo.NewWriterNanos(&buf)
	} else {
		w = pcapgo.NewWriter(&buf)
	}
	if err := w.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		return err
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n := headers(data, r.LinkType())
		ci.CaptureLength = n
		if err := w.WritePacket(ci, data[:n]); err != nil {
			return err
		}
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// keepPayload is the largest TCP payload a cut frame keeps whole: a
// COM_QUIT (5 bytes), which the TIME_WAIT analysis recognises. Longer
// payloads go entirely, so that no MySQL packet is left half there.
const keepPayload = 5

// headers is the length of the frame up to the end of its TCP header, with
// its payload if that is at most keepPayload bytes; the whole frame when
// it carries no TCP.
func headers(data []byte, lt layers.LinkType) int {
	p := gopacket.NewPacket(data, lt, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
	tl := p.Layer(layers.LayerTypeTCP)
	if tl == nil {
		return len(data)
	}
	payload := len(tl.LayerPayload())
	if payload <= keepPayload {
		return len(data)
	}
	return len(data) - payload
}
