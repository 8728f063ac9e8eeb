// Package allreduce averages float32 gradient buckets across the ranks of a data-parallel
// cluster with a ring all-reduce (reduce-scatter, then all-gather, n-1 steps each).
//
// Contract:
//   - Ring is the core: a state machine with no I/O, no goroutines and no clock. Messages go in
//     with Step, come out with Ready, and time arrives as Tick. It is not safe for concurrent use.
//   - Reducer is the NATS edge: it runs one Ring over a *nats.Conn, with one sender goroutine that
//     publishes frames in order and a ticker that feeds Tick. Its methods are safe for concurrent use.
//   - Membership is given, never discovered here: the caller passes a View (generation, own rank,
//     world size) and the subject of every rank. Frames of a newer generation are held until the
//     caller moves to it (SetView), so subjects should name nodes, not ranks (see Subject).
//   - The result of every bucket is the mean over ranks (sum in ring order, then divided by n) and
//     is bitwise identical on every rank: each segment is reduced once, by its owner, and copied.
//   - Failures are errors, never hangs: ranks send heartbeats to both neighbours; a neighbour
//     silent for Config.TimeoutTicks ticks during an all-reduce gives ErrTimeout, and so do chunks
//     that a heartbeat says were sent but never arrive. A failing rank tells every peer
//     (ErrPeerAborted). Chunks wait until the right neighbour has answered a greeting, so none is
//     published before the receiver subscribed.
//   - Wire: each rank receives on its own subject; a frame is a 64-byte little-endian header and a
//     float32 payload (frame.go). Chunks are at most Config.ChunkBytes (<= 1 MiB) of payload.
//   - Bad frames and bad arguments are returned as errors wrapped around the block in errors.go;
//     nothing in this package panics on input from the network.
package allreduce
