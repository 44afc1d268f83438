package server

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// copyTree copies the directory src to dst, which must not exist, keeping
// permission bits. Regular files go through io.Copy, which uses
// copy_file_range on Linux: a reflink on filesystems that support it, an
// in-kernel copy elsewhere. skip, if set, is asked about every path below
// src (relative to src, with slashes); a skipped directory is not entered.
// It returns the number of bytes copied.
func copyTree(src, dst string, skip func(rel string) bool) (int64, error) {
	var total int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if skip != nil && rel != "." && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
			// Mkdir is subject to the umask; the server expects the
			// template's modes.
			return os.Chmod(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			n, err := copyFile(path, target, info.Mode().Perm())
			total += n
			return err
		default:
			return fmt.Errorf("copy %s: unsupported file type %s", path, d.Type())
		}
	})
	if err != nil {
		return total, fmt.Errorf("copy %s: %w", src, err)
	}
	return total, nil
}

// notCopied says which files of a template data directory a run does
// without (rel is relative to the template, with slashes). InnoDB makes them
// again when it needs them, and leaving them out spares 24 of the 96 MiB of
// MySQL 9.7's template:
//   - #ib_16384_0.dblwr and the like, the doublewrite buffer files: a run
//     starts with innodb_doublewrite=OFF (see throwawayArgs), and a scenario
//     that turns it on gets new files, created at start;
//   - #innodb_redo/#ib_redoN_tmp, the spare redo log files: InnoDB deletes
//     them at every start and creates new ones in the background.
//
// MariaDB's template has neither.
func notCopied(rel string) bool {
	dir, name := path.Split(rel)
	switch dir {
	case "":
		return strings.HasPrefix(name, "#ib_") && strings.HasSuffix(name, ".dblwr")
	case "#innodb_redo/":
		return strings.HasPrefix(name, "#ib_redo") && strings.HasSuffix(name, "_tmp")
	}
	return false
}

func copyFile(src, dst string, perm os.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, perm)
	}
	return n, err
}

// treeSize sums the sizes of the regular files below dir.
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	return total, err
}
