package iofault

import "time"

// SetServeWait shortens how long a FUSE unmount waits for the kernel to
// drop the connection before it aborts it, for a test; it returns the
// restore.
func SetServeWait(d time.Duration) (restore func()) {
	old := serveWait
	serveWait = d
	return func() { serveWait = old }
}
