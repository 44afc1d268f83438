package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFlavors(t *testing.T) {
	if got, want := Flavors(), []string{"mariadb", "mysql"}; !slices.Equal(got, want) {
		t.Fatalf("Flavors() = %v, want %v", got, want)
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("LABRUN_CACHE", "")
	if got := CacheDir(); got != "/var/cache/labrun" {
		t.Errorf("CacheDir() = %q, want /var/cache/labrun", got)
	}
	t.Setenv("LABRUN_CACHE", "/tmp/x")
	if got := CacheDir(); got != "/tmp/x" {
		t.Errorf("CacheDir() = %q, want /tmp/x", got)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out, want string
	}{
		{"/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))\n", "9.7.4"},
		{"/usr/sbin/mariadbd  Ver 10.11.18-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n", "10.11.18"},
		{"mysqld  Ver 8.4.3 for Linux on aarch64 (MySQL Community Server - GPL)", "8.4.3"},
		{"garbage", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := parseVersion(tt.out)
		if tt.want == "" {
			if !errors.Is(err, ErrNoVersion) {
				t.Errorf("parseVersion(%q) error = %v, want ErrNoVersion", tt.out, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseVersion(%q) = %q, %v, want %q", tt.out, got, err, tt.want)
		}
	}
}

// TestFind checks that only a complete image is found: marker written,
// naming the flavor, and the server, client and template all present.
func TestFind(t *testing.T) {
	good := Image{Flavor: "mysql", Version: "9.7.4", Suite: "sid", Built: time.Unix(1e9, 0).UTC()}
	files := []string{"usr/sbin/mysqld", "usr/bin/mysql", "var/lib/labrun/template/ibdata1"}
	tests := []struct {
		name    string
		marker  any // nil: no marker file
		files   []string
		wantErr error
	}{
		{"absent", nil, nil, ErrNotBuilt},
		{"no marker", nil, files, ErrNotBuilt},
		{"bad marker", "not an object", files, ErrNotBuilt},
		{"other flavor", Image{Flavor: "mariadb", Version: "10.11.18"}, files, ErrNotBuilt},
		{"no version", Image{Flavor: "mysql"}, files, ErrNotBuilt},
		{"no template", good, files[:2], ErrNotBuilt},
		{"no client", good, []string{files[0], files[2]}, ErrNotBuilt},
		{"complete", good, files, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			t.Setenv("LABRUN_CACHE", cache)
			dir := filepath.Join(cache, "images", "mysql")
			for _, f := range tt.files {
				p := filepath.Join(dir, rootfsName, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.marker != nil {
				b, _ := json.Marshal(tt.marker)
				os.MkdirAll(dir, 0o755)
				if err := os.WriteFile(filepath.Join(dir, markerName), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			img, err := Find("mysql")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Find() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Find() error = %v", err)
			}
			if img.Version != "9.7.4" || img.Root != filepath.Join(dir, rootfsName) || !img.Built.Equal(good.Built) {
				t.Errorf("Find() = %+v", img)
			}
		})
	}
}

func TestFindErrors(t *testing.T) {
	t.Setenv("LABRUN_CACHE", t.TempDir())
	_, err := Find("mysql")
	if want := "flavor not built: run 'labrun images build mysql'"; err == nil || err.Error() != want {
		t.Errorf("Find(mysql) error = %v, want %q", err, want)
	}
	if _, err := Find("postgres"); !errors.Is(err, ErrUnknownFlavor) {
		t.Errorf("Find(postgres) error = %v, want ErrUnknownFlavor", err)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	keep := []string{".mariadb.build-1", "mariadb", ".mysql.lock"}
	gone := []string{".mysql.build-123", ".mysql.build-456", "mysql"}
	for _, d := range append(slices.Clone(keep), gone...) {
		if err := os.MkdirAll(filepath.Join(dir, d, "rootfs", "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeStale(dir, "mysql", filepath.Join(dir, "mysql")); err != nil {
		t.Fatal(err)
	}
	for _, d := range keep {
		if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
	for _, d := range gone {
		if _, err := os.Stat(filepath.Join(dir, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there", d)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/run/netns/x", "/run/netns/x"},
		{`/a\040b`, "/a b"},
		{`/a\011b\134c`, "/a\tb\\c"},
		{`/trailing\04`, `/trailing\04`},
	}
	for _, tt := range tests {
		if got := unescapeMountPath(tt.in); got != tt.want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCopyTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "#innodb_redo"), 0o750))
	must(os.WriteFile(filepath.Join(src, "ibdata1"), make([]byte, 1<<20), 0o640))
	must(os.WriteFile(filepath.Join(src, "#innodb_redo", "#ib_redo1"), []byte("redo"), 0o600))
	must(os.Symlink("ibdata1", filepath.Join(src, "link")))
	must(os.Chmod(filepath.Join(src, "#innodb_redo"), 0o750))

	dst := filepath.Join(t.TempDir(), "dst")
	n, err := copyTree(src, dst, nil)
	must(err)
	if want := int64(1<<20 + 4); n != want {
		t.Errorf("copied %d bytes, want %d", n, want)
	}
	for p, mode := range map[string]os.FileMode{
		"ibdata1": 0o640, "#innodb_redo": 0o750 | os.ModeDir, "#innodb_redo/#ib_redo1": 0o600,
	} {
		info, err := os.Stat(filepath.Join(dst, p))
		must(err)
		if info.Mode() != mode {
			t.Errorf("%s mode %v, want %v", p, info.Mode(), mode)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "ibdata1" {
		t.Errorf("link = %q, %v", l, err)
	}
	if _, err := copyTree(src, dst, nil); err == nil {
		t.Error("copy onto an existing directory succeeded")
	}
}

func TestNotCopied(t *testing.T) {
	tests := []struct {
		rel  string
		want bool
	}{
		{"#ib_16384_0.dblwr", true},
		{"#ib_16384_1.dblwr", true},
		{"#innodb_redo/#ib_redo74_tmp", true},
		{"#innodb_redo/#ib_redo73", false},
		{"#innodb_redo", false},
		{"ibdata1", false},
		{"undo_001", false},
		{"mysql.ibd", false},
		{"ib_logfile0", false},
		{"mysql/#ib_16384_0.dblwr", false},
		{"sys/#ib_redo1_tmp", false},
	}
	for _, tt := range tests {
		if got := notCopied(tt.rel); got != tt.want {
			t.Errorf("notCopied(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

// TestCopyTemplate copies a template shaped like MySQL's and checks that
// what notCopied names stays behind and everything else arrives.
func TestCopyTemplate(t *testing.T) {
	src := t.TempDir()
	files := map[string]int{
		"ibdata1": 4096, "#ib_16384_0.dblwr": 8192, "#innodb_redo/#ib_redo9": 512,
		"#innodb_redo/#ib_redo10_tmp": 1024, "mysql/general_log.sdi": 16,
	}
	for p, size := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), make([]byte, size), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	dst := t.TempDir()
	n, err := copyTemplate(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4096 + 512 + 16); n != want {
		t.Errorf("copied %d bytes, want %d", n, want)
	}
	for p := range files {
		_, err := os.Stat(filepath.Join(dst, p))
		if notCopied(p) != errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: stat after the copy: %v", p, err)
		}
	}
}

// TestBuildCancelled interrupts a real build once debootstrap has mounted
// something inside the target (or after 60 s) and checks that nothing
// remains that could look like an image: no build directory, no mount, and
// Find still says the flavor is not built. It downloads packages, so it
// runs only with LABRUN_BUILD_IMAGES=1.
func TestBuildCancelled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: debootstrap")
	}
	if os.Getenv("LABRUN_BUILD_IMAGES") != "1" {
		t.Skip("downloads packages: set LABRUN_BUILD_IMAGES=1")
	}
	cache := t.TempDir()
	t.Setenv("LABRUN_CACHE", cache)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		deadline := time.After(60 * time.Second)
		for {
			select {
			case <-ctx.Done():
				return
			case <-deadline:
				cancel()
				return
			case <-time.After(200 * time.Millisecond):
				if len(mountsUnder(cache)) > 0 {
					t.Log("cancelling with a mount inside the build directory")
					cancel()
					return
				}
			}
		}
	}()
	_, err := Build(ctx, "mariadb", io.Discard)
	if !errors.Is(err, context.Canceled) && !strings.Contains(fmt.Sprint(err), "killed") {
		t.Fatalf("Build() error = %v, want cancellation", err)
	}
	if m := mountsUnder(cache); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "images", ".mariadb.build-*"))
	if len(left) > 0 {
		t.Errorf("build directories left: %q", left)
	}
	if _, err := Find("mariadb"); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Find() after a cancelled build = %v, want ErrNotBuilt", err)
	}
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(unescapeMountPath(f[4]), dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func TestRemove(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("LABRUN_CACHE", cache)
	dir := filepath.Join(cache, "images", "mysql")
	root := filepath.Join(dir, rootfsName)
	for _, f := range []string{"usr/sbin/mysqld", "usr/bin/mysql", "var/lib/labrun/template/ibdata1"} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(Image{Flavor: "mysql", Version: "9.7.4"})
	os.WriteFile(filepath.Join(dir, markerName), b, 0o644)
	if _, err := Find("mysql"); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(root, runsDir, "r1")
	os.MkdirAll(run, 0o700)
	if err := Remove("mysql"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove() with a run = %v, want ErrInUse", err)
	}
	os.Remove(run)
	if err := Remove("mysql"); err != nil {
		t.Fatal(err)
	}
	if _, err := Find("mysql"); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Find() after Remove = %v, want ErrNotBuilt", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "images", ".mysql.build-*")); len(left) > 0 {
		t.Errorf("left %q", left)
	}
	if err := Remove("mysql"); err != nil {
		t.Errorf("second Remove() = %v", err)
	}
}
