package cuda

import "errors"

// Errors of this package; wrapped with %w, test with errors.Is.
var (
	// ErrNoDevice: the driver answered but there is no usable GPU (or the ordinal is out of range).
	ErrNoDevice = errors.New("cuda: no GPU answered")
	// ErrDriver: a CUDA driver or cuBLAS call failed; the wrapped text names the call.
	ErrDriver = errors.New("cuda: driver call failed")
	// ErrNotBuilt: the binary was built without -tags cuda.
	ErrNotBuilt = errors.New("cuda: built without the cuda tag; rebuild with -tags cuda (see scripts/cuda-deps.sh)")
)
