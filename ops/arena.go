package ops

// Arena hands out tensors for one step and takes them all back at Reset. The i-th request of a
// step gets the i-th slot, so when every step asks for the same shapes in the same order (a
// training loop does) the buffers of the first step are reused and nothing is allocated.
type Arena struct {
	slots []*Tensor
	next  int
	// views are tensor headers over data owned elsewhere (Detach); kept apart from slots so a
	// slot never ends up pointing at another slot's buffer.
	views    []*Tensor
	nextView int
	// The same for device tensors: slots keep their device memory across steps.
	devSlots    []*Tensor
	nextDev     int
	devViews    []*Tensor
	nextDevView int
}

// Get returns a tensor of the given shape whose data is NOT cleared: ops that write every
// element use it. Its gradient is nil.
func (a *Arena) Get(shape ...int) *Tensor {
	n := numel(shape)
	t := nextSlot(&a.slots, &a.next)
	if cap(t.Data) < n {
		t.Data = make([]float32, n)
	}
	t.Data = t.Data[:n]
	t.Shape = append(t.Shape[:0], shape...)
	t.Grad = nil
	t.Name = ""
	t.requiresGrad = false
	return t
}

// Zeros is Get with the data cleared.
func (a *Arena) Zeros(shape ...int) *Tensor {
	t := a.Get(shape...)
	clear(t.Data)
	return t
}

// Reset makes every tensor handed out since the last Reset available again. Tensors from
// before the Reset must not be used after it.
func (a *Arena) Reset() {
	// A device view lets go of its owner (the collector may have it now) and of its memory,
	// so a stale use fails loudly instead of reading or freeing what another tensor owns.
	for _, t := range a.devViews[:a.nextDevView] {
		if t.dgradKeep != nil { // a gradient the view allocated itself
			t.dev.Free(t.dgradKeep)
		}
		t.dev, t.dmem, t.owner, t.dgrad, t.dgradKeep = nil, nil, nil, nil, nil
	}
	a.next, a.nextView, a.nextDev, a.nextDevView = 0, 0, 0, 0
}

// getDev is Get for a tensor on device d.
func (a *Arena) getDev(d Device, shape ...int) *Tensor {
	n := numel(shape)
	t := nextSlot(&a.devSlots, &a.nextDev)
	if t.dev != d || t.dmem == nil || t.dmem.Len() < n {
		if t.dmem != nil {
			t.dev.Free(t.dmem)
		}
		if t.dgradKeep != nil {
			t.dev.Free(t.dgradKeep)
			t.dgradKeep = nil
		}
		t.dev, t.dmem = d, devAlloc(d, n)
	}
	t.Shape = append(t.Shape[:0], shape...)
	t.dgrad, t.dgradOff = nil, 0
	t.Name = ""
	t.requiresGrad = false
	return t
}

// devView is a header over x's device data, like view.
func (a *Arena) devView(x *Tensor) *Tensor {
	t := nextSlot(&a.devViews, &a.nextDevView)
	owner := x
	if x.owner != nil {
		owner = x.owner
	}
	t.dev, t.dmem, t.owner, t.dmemCollected = x.dev, x.dmem, owner, false
	t.Shape = append(t.Shape[:0], x.Shape...)
	t.dgrad, t.dgradOff, t.dgradKeep, t.Name, t.requiresGrad = nil, 0, nil, "", false
	return t
}

// nextSlot hands out (*slots)[*next], growing the list by a fresh tensor when every slot is
// in use, and advances *next.
func nextSlot(slots *[]*Tensor, next *int) *Tensor {
	if *next == len(*slots) {
		*slots = append(*slots, &Tensor{})
	}
	t := (*slots)[*next]
	*next++
	return t
}

// view returns a header over data that the arena does not own.
func (a *Arena) view(data []float32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic("ops: view: shape does not match data length")
	}
	t := nextSlot(&a.views, &a.nextView)
	t.Data = data
	t.Shape = append(t.Shape[:0], shape...)
	t.Grad, t.gradBuf, t.Name, t.requiresGrad = nil, nil, "", false
	return t
}

// Bytes is the memory the arena holds, data and gradients.
func (a *Arena) Bytes() int {
	n := 0
	for _, t := range a.slots {
		n += 4 * (cap(t.Data) + cap(t.gradBuf))
	}
	return n
}
