package ops

import (
	"fmt"
	"math"
)

// Dropout zeroes each element with probability p and scales the survivors by 1/(1-p)
// (inverted dropout, as torch.nn.Dropout), drawing the mask from rng. The mask is kept for
// backward, which multiplies the output gradient by the same mask. Outside training, and for
// p = 0, it is the identity and returns x itself without drawing from rng; p = 1 gives zeros.
// x: any shape -> that shape
func Dropout(tp *Tape, x *Tensor, p float32, training bool, rng *RNG) *Tensor {
	if !(p >= 0 && p <= 1) {
		panic(fmt.Sprintf("ops: Dropout: probability %v outside [0, 1]", p))
	}
	if !training || p == 0 {
		return x
	}
	if rng == nil {
		panic("ops: Dropout: training with p > 0 needs an RNG")
	}
	if x.dev != nil {
		return devDropout(tp, x.dev, x, p, rng)
	}
	mask := tp.alloc(x.Shape...)
	dropoutMask(mask.Data, p, rng)
	out := tp.alloc(x.Shape...)
	ewRun(mulLoop, out.Data, x.Data, mask.Data, 0, 0)
	if tp.needs(x) {
		n := tp.push(dropoutBackward, out, x)
		n.saved[0] = mask
	}
	return out
}

// dropoutMask fills m with 0 (probability p) or 1/(1-p). Each 64-bit draw decides two elements
// by comparing its halves with p*2^32: a quarter of the cost of a float per element.
func dropoutMask(m []float32, p float32, rng *RNG) {
	if p == 1 {
		clear(m)
		return
	}
	scale := 1 / (1 - p)
	thr := uint32(float64(p) * (1 << 32)) // p < 1 here, so this fits
	i := 0
	for ; i+2 <= len(m); i += 2 {
		u := rng.Uint64()
		m[i] = keep(uint32(u), thr, scale)
		m[i+1] = keep(uint32(u>>32), thr, scale)
	}
	if i < len(m) {
		m[i] = keep(uint32(rng.Uint64()), thr, scale)
	}
}

// keep is 0 where u < thr, else scale; masked rather than branched, as the outcome is random.
func keep(u, thr uint32, scale float32) float32 {
	drop := (uint64(u) - uint64(thr)) >> 63 // 1 where u < thr
	return math.Float32frombits(math.Float32bits(scale) & uint32(drop-1))
}

// mulLoop: dst = a * b.
func mulLoop(dst, a, b []float32, _, _ float32) {
	b = b[:len(a)]
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v * b[i]
	}
}

// mulAccLoop: dst += a * b.
func mulAccLoop(dst, a, b []float32, _, _ float32) {
	b = b[:len(a)]
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] += v * b[i]
	}
}

func dropoutBackward(n *node) {
	ewRun(mulAccLoop, n.in[0].grad(), n.out.Grad, n.saved[0].Data, 0, 0)
}
