package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File names inside a report directory; other tools look for report.json
// by this name.
const (
	JSONFile = "report.json"
	HTMLFile = "report.html"
)

// WriteJSON writes the report as indented JSON. Map keys come out sorted
// (encoding/json sorts them), so two runs with the same outcome produce the
// same bytes and can be diffed.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Evidence is full of "->" and "<none>"; escaping them for HTML would
	// only make the file harder to read.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return nil
}

// WriteJSONFile writes dir/report.json, creating dir if needed.
func WriteJSONFile(dir string, r *Report) error {
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, JSONFile), b.Bytes())
}

// WriteHTMLFile writes dir/report.html, creating dir if needed. The page
// links to pcaps by the paths in the report, which resolve against dir when
// they are relative.
func WriteHTMLFile(dir string, r *Report) error {
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, HTMLFile), b.Bytes())
}

// WriteJUnitFile writes JUnit XML to path (labrun run --junit FILE),
// creating its directory if needed.
func WriteJUnitFile(path string, r *Report) error {
	var b bytes.Buffer
	if err := WriteJUnit(&b, r); err != nil {
		return err
	}
	return writeFile(path, b.Bytes())
}

// writeFile replaces path atomically: a nightly job that reads the report
// while a run is writing it sees the old file or the new one, never half of
// one.
func writeFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; reports hold no secrets (passwords are
	// redacted before writing) and CI must be able to read them.
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
