//go:build cudaemu && !cuda

package cuda

import (
	"errors"

	"wkd/ops"
)

// InjectFault makes d, a device of this package opened through ops (ops.OpenDevice("cuda")),
// fail as a GPU fault would: its sticky error is set, and every later launch and copy does
// nothing. Only the host emulator has it, so that tests of the layers above can show what a
// failed device leaves behind; it panics for any other ops.Device.
func InjectFault(d ops.Device, why string) {
	b, ok := d.(*backend)
	if !ok {
		panic("cuda: InjectFault: not a device of this package")
	}
	b.d.setErr("injected", errors.New(why))
}
