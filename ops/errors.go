package ops

import "errors"

// Errors of this package, returned at its I/O boundaries; wrapped with %w, test with errors.Is.
var (
	// ErrOptimizerState: a checkpoint's optimizer state does not fit this optimizer's parameters.
	ErrOptimizerState = errors.New("ops: optimizer state does not fit the parameters")
	// ErrNoBackend: the device backend asked for is not in this build (OpenDevice).
	ErrNoBackend = errors.New("ops: no such device backend in this build")
)
