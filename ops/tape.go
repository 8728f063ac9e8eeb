package ops

// Tape records, op by op, what the backward pass needs, and replays it in reverse.
//
// A nil *Tape is valid: ops then allocate on the heap and record nothing (inference, tests).
// A Tape with recording off (NoGrad) still draws from its arena but records nothing, so a frozen
// teacher costs no tape memory.
type Tape struct {
	Arena
	nodes  []node
	noGrad bool
}

// node is one recorded op: its backward function (a plain function, never a closure, so
// recording allocates nothing), its output and the inputs and saved values backward reads.
type node struct {
	backward func(n *node)
	out      *Tensor
	in       [4]*Tensor
	saved    [4]*Tensor
	ints     [8]int
	floats   [4]float32
	// state is an op's own object (a layer's cache or running statistics); a pointer, so
	// storing it allocates nothing.
	state any
}

// NewTape returns an empty recording tape.
func NewTape() *Tape { return &Tape{} }

// Reset forgets the recorded ops and takes back every arena tensor. Call it at the start of
// each step.
func (tp *Tape) Reset() {
	for i := range tp.nodes {
		tp.nodes[i] = node{}
	}
	tp.nodes = tp.nodes[:0]
	tp.Arena.Reset()
}

// SetNoGrad turns recording off (true) or on (false) and returns the previous setting.
func (tp *Tape) SetNoGrad(off bool) (was bool) {
	was, tp.noGrad = tp.noGrad, off
	return was
}

// Recording reports whether ops on this tape are recorded.
func (tp *Tape) Recording() bool { return tp != nil && !tp.noGrad }

// Len is the number of recorded ops.
func (tp *Tape) Len() int {
	if tp == nil {
		return 0
	}
	return len(tp.nodes)
}

// alloc returns an uncleared output tensor: from the arena, or the heap for a nil tape.
func (tp *Tape) alloc(shape ...int) *Tensor {
	if tp == nil {
		return New(shape...)
	}
	return tp.Get(shape...)
}

// zeros returns a cleared output tensor.
func (tp *Tape) zeros(shape ...int) *Tensor {
	if tp == nil {
		return New(shape...)
	}
	return tp.Zeros(shape...)
}

// allocOn returns an uncleared output tensor on d (the host when d is nil).
func (tp *Tape) allocOn(d Device, shape ...int) *Tensor {
	if d == nil {
		return tp.alloc(shape...)
	}
	if tp == nil {
		return NewOn(d, shape...)
	}
	return tp.getDev(d, shape...)
}

// AllocOn is allocOn for other packages: an uncleared tensor owned by this step, on d.
func (tp *Tape) AllocOn(d Device, shape ...int) *Tensor { return tp.allocOn(d, shape...) }

// Alloc is the exported form of alloc for packages that build ops of their own (models, losses
// in trainer): an uncleared tensor owned by this step.
func (tp *Tape) Alloc(shape ...int) *Tensor { return tp.alloc(shape...) }

// needs reports whether an op with these inputs must be recorded, and marks nothing.
func (tp *Tape) needs(ins ...*Tensor) bool {
	if !tp.Recording() {
		return false
	}
	for _, t := range ins {
		if t != nil && t.requiresGrad {
			return true
		}
	}
	return false
}

// push records an op whose output requires gradient. It returns the node so the op can fill
// in what its backward reads.
func (tp *Tape) push(backward func(n *node), out *Tensor, ins ...*Tensor) *node {
	out.requiresGrad = true
	tp.nodes = append(tp.nodes, node{backward: backward, out: out})
	n := &tp.nodes[len(tp.nodes)-1]
	copy(n.in[:], ins)
	for _, in := range ins {
		if in != nil && in.onReady != nil && in.requiresGrad {
			in.pendingUses++
		}
	}
	return n
}

// Backward seeds the gradient of the scalar loss with 1 and runs, in reverse order, the
// backward of every recorded op that the gradient reaches. Gradients accumulate into
// parameters' Grad. Like PyTorch freeing the graph it went through, the ops it ran are then
// retired; ops it did not reach stay recorded, so a generator's forward survives the
// discriminator's backward on a detached copy of its output and can be backpropagated later.
func (tp *Tape) Backward(loss *Tensor) {
	if loss.Numel() != 1 {
		panic("ops: Backward needs a scalar loss, got shape " + loss.String())
	}
	if !loss.requiresGrad {
		panic("ops: Backward: the loss does not depend on anything that requires gradient")
	}
	if loss.dev != nil {
		loss.dev.AddScalar(loss.dgradBuf(), 1)
	} else {
		loss.grad()[0] += 1
	}
	tp.BackwardFrom()
}

// BackwardFrom runs the recorded backward passes with whatever output gradients are already
// set (Backward seeds a scalar; a caller may seed several outputs).
func (tp *Tape) BackwardFrom() {
	live := 0
	for i := len(tp.nodes) - 1; i >= 0; i-- {
		n := &tp.nodes[i]
		if n.backward == nil {
			continue
		}
		if !n.out.HasGrad() {
			live++
			continue
		}
		n.backward(n)
		for _, in := range n.in {
			if in != nil && in.onReady != nil && in.requiresGrad {
				if in.pendingUses--; in.pendingUses == 0 {
					in.onReady()
				}
			}
		}
		*n = node{}
	}
	if live == 0 {
		tp.nodes = tp.nodes[:0]
	}
}

// Detach returns a tensor sharing x's data that no gradient flows through (PyTorch's
// x.detach()), drawn from the arena so it costs no allocation in steady state.
func (tp *Tape) Detach(x *Tensor) *Tensor {
	if x.dev != nil {
		if tp == nil {
			// A copy, not a view: without an arena to recycle it, a view would hold x's
			// memory for as long as the caller keeps it.
			c := NewLike(x)
			CopyData(c, x)
			return c
		}
		return tp.devView(x) // keeps x alive and never frees its memory
	}
	if tp == nil {
		return FromData(x.Data, x.Shape...)
	}
	return tp.view(x.Data, x.Shape...)
}

// SeedGrad adds g to t's gradient (allocating it if needed).
func SeedGrad(t *Tensor, g []float32) {
	if t.dev != nil {
		if len(g) != t.Numel() {
			panic("ops: SeedGrad: gradient size differs from tensor " + t.String())
		}
		tmp := NewOn(t.dev, t.Shape...)
		tmp.CopyFromHost(g)
		t.dev.Axpy(t.dgradBuf(), tmp.buf(), 1)
		return
	}
	dst := t.grad()
	if len(g) != len(dst) {
		panic("ops: SeedGrad: gradient size differs from tensor " + t.String())
	}
	for i, v := range g {
		dst[i] += v
	}
}
