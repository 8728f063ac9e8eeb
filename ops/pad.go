package ops

import "fmt"

// ReflectionPad2d pads H and W by pad on each side with the mirror image of the border,
// excluding the border itself, as torch.nn.ReflectionPad2d (pad < H and pad < W).
// x: (N, C, H, W) -> (N, C, H+2*pad, W+2*pad)
func ReflectionPad2d(tp *Tape, x *Tensor, pad int) *Tensor {
	return pad2d(tp, x, pad, true)
}

// ZeroPad2d pads H and W by pad zeros on each side, as torch.nn.ZeroPad2d.
// x: (N, C, H, W) -> (N, C, H+2*pad, W+2*pad)
func ZeroPad2d(tp *Tape, x *Tensor, pad int) *Tensor {
	return pad2d(tp, x, pad, false)
}

func pad2d(tp *Tape, x *Tensor, pad int, reflect bool) *Tensor {
	n, c, h, w := x.NCHW()
	if pad < 0 || reflect && (pad >= h || pad >= w) {
		op, need := "ZeroPad2d", "0 <= pad"
		if reflect {
			op, need = "ReflectionPad2d", "0 <= pad < H, W"
		}
		panic(fmt.Sprintf("ops: %s: padding %d does not fit input %v (needs %s)", op, pad, x.Shape, need))
	}
	ph, pw := h+2*pad, w+2*pad
	if x.dev != nil {
		return devPad2d(tp, x.dev, x, pad, reflect, n, c, ph, pw)
	}
	out := tp.alloc(n, c, ph, pw)
	j := padBodies.get()
	*j = padJob{x: x.Data, y: out.Data, h: h, w: w, pad: pad, reflect: reflect}
	ParallelFor(n*c, max(1, ewGrain/max(ph*pw, 1)), j)
	*j = padJob{}
	padBodies.put(j)
	if tp.needs(x) {
		nd := tp.push(pad2dBackward, out, x)
		nd.ints[0] = pad
		if reflect {
			nd.ints[1] = 1
		}
	}
	return out
}

// padJob pads planes [lo, hi) of x into y.
type padJob struct {
	x, y      []float32
	h, w, pad int
	reflect   bool
}

var padBodies bodyFreeList[padJob]

func (j *padJob) Run(lo, hi int) {
	h, w, pad := j.h, j.w, j.pad
	ph, pw := h+2*pad, w+2*pad
	for p := lo; p < hi; p++ {
		src, dst := j.x[p*h*w:(p+1)*h*w], j.y[p*ph*pw:(p+1)*ph*pw]
		for i := 0; i < ph; i++ {
			row := dst[i*pw : (i+1)*pw]
			si, ok := padIndex(i-pad, h, j.reflect)
			if !ok {
				clear(row)
				continue
			}
			in := src[si*w : (si+1)*w]
			copy(row[pad:pad+w], in)
			for k := 0; k < pad; k++ {
				if j.reflect {
					row[k] = in[pad-k]
					row[pad+w+k] = in[w-2-k]
				} else {
					row[k], row[pad+w+k] = 0, 0
				}
			}
		}
	}
}

// padIndex maps a padded coordinate i-pad to the source coordinate, or reports a zero row.
func padIndex(i, n int, reflect bool) (int, bool) {
	switch {
	case i < 0 && reflect:
		return -i, true
	case i >= n && reflect:
		return 2*(n-1) - i, true
	case i < 0 || i >= n:
		return 0, false
	}
	return i, true
}

// pad2dBackward adds every padded element's gradient to the source element it copies, so a
// border-adjacent element of a reflection pad collects up to four contributions.
func pad2dBackward(nd *node) {
	x := nd.in[0]
	if !x.requiresGrad {
		return
	}
	pad, reflect := nd.ints[0], nd.ints[1] == 1
	n, c, h, w := x.NCHW()
	ph, pw := h+2*pad, w+2*pad
	dx, dy := x.grad(), nd.out.Grad
	for p := 0; p < n*c; p++ {
		src, dst := dy[p*ph*pw:(p+1)*ph*pw], dx[p*h*w:(p+1)*h*w]
		for i := 0; i < ph; i++ {
			si, ok := padIndex(i-pad, h, reflect)
			if !ok {
				continue
			}
			row, out := src[i*pw:(i+1)*pw], dst[si*w:(si+1)*w]
			for j, v := range row[pad : pad+w] {
				out[j] += v
			}
			if reflect {
				for j := 0; j < pad; j++ {
					out[pad-j] += row[j]
					out[w-2-j] += row[pad+w+j]
				}
			}
		}
	}
}
