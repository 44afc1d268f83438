package tcpmodel

import "time"

// Delayed acknowledgements (include/net/tcp.h): a receiver that has data
// to acknowledge and nothing to send waits at most TCP_DELACK_MAX (HZ/5)
// before it sends a bare ACK, at least TCP_DELACK_MIN (HZ/25) once out of
// quick-ack mode. A server whose statement is stalled has nothing to send,
// so the request is acknowledged by a bare ACK within DelayedACKMax.
const (
	DelayedACKMin = 40 * time.Millisecond
	DelayedACKMax = 200 * time.Millisecond
)
