package allreduce

import "errors"

// Exported errors. Wrapped with %w; test with errors.Is.
var (
	ErrTimeout      = errors.New("allreduce: neighbour timed out")
	ErrPeerAborted  = errors.New("allreduce: a peer aborted the all-reduce")
	ErrViewChanged  = errors.New("allreduce: view changed during the all-reduce")
	ErrMismatch     = errors.New("allreduce: peers disagree on the all-reduce shape")
	ErrHeldOverflow = errors.New("allreduce: too much early data held; raise Config.MaxHeldBytes")
	ErrBusy         = errors.New("allreduce: an all-reduce is already running")
	ErrNotActive    = errors.New("allreduce: no all-reduce is running")
	ErrBadArgument  = errors.New("allreduce: bad argument")
	ErrStale        = errors.New("allreduce: stale message dropped")
	ErrDuplicate    = errors.New("allreduce: duplicate chunk dropped")
	ErrRejected     = errors.New("allreduce: message rejected")
	ErrTruncated    = errors.New("allreduce: truncated frame")
	ErrMalformed    = errors.New("allreduce: malformed frame")
	ErrClosed       = errors.New("allreduce: reducer closed")
	ErrPublish      = errors.New("allreduce: publish failed")
	ErrBadConfig    = errors.New("allreduce: bad config")
	ErrAborted      = errors.New("allreduce: aborted by the caller")
)
