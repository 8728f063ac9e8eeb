package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestConvTranspose2dMatchesDefinition(t *testing.T) {
	withBands(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 1))
		for _, cc := range convTransposeCases {
			x, w, b := cc.tensors(r, true)
			y := ConvTranspose2d(nil, x, w, b, cc.stride, cc.pad, cc.outPad)
			oh := (cc.h-1)*cc.stride - 2*cc.pad + cc.kh + cc.outPad
			ow := (cc.w-1)*cc.stride - 2*cc.pad + cc.kw + cc.outPad
			if want := []int{cc.n, cc.k, oh, ow}; fmt.Sprint(y.Shape) != fmt.Sprint(want) {
				t.Fatalf("%v: output shape %v, want %v", cc, y.Shape, want)
			}
			compareRef(t, cc.String(), y.Data, refConvTranspose2d(x, w, b, cc.stride, cc.pad, cc.outPad), 1e-6)
		}
	})
}

func TestConvTranspose2dGradient(t *testing.T) {
	withBands(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(12, 2))
		for _, cc := range convTransposeCases {
			x, w, b := cc.tensors(r, true)
			ins := []*Tensor{x, w}
			if b != nil {
				ins = append(ins, b)
			}
			gradCheck(t, "ConvTranspose2d "+cc.String(), 1e-2, 1e-3, func(tp *Tape) *Tensor {
				return ConvTranspose2d(tp, x, w, b, cc.stride, cc.pad, cc.outPad)
			}, ins...)
		}
	})
}

// TestConvTransposeIsConvAdjoint: <conv(x, w), y> = <x, convT(y, w)> for the same weight, the
// identity that makes each op the other's data gradient.
func TestConvTransposeIsConvAdjoint(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 3))
	for _, cc := range conv2dCases {
		x, w, _ := cc.tensors(r, false)
		y := Conv2d(nil, x, w, nil, cc.stride, cc.pad)
		v := randTensor(r, y.Shape...)
		// The output padding that gives back x's size.
		outPad := cc.h + 2*cc.pad - cc.kh - (y.Shape[2]-1)*cc.stride
		if outPad != cc.w+2*cc.pad-cc.kw-(y.Shape[3]-1)*cc.stride {
			continue // H and W would need different output paddings
		}
		xt := ConvTranspose2d(nil, v, w, nil, cc.stride, cc.pad, outPad)
		var lhs, rhs float64
		for i := range y.Data {
			lhs += float64(y.Data[i]) * float64(v.Data[i])
		}
		for i := range x.Data {
			rhs += float64(x.Data[i]) * float64(xt.Data[i])
		}
		if d := lhs - rhs; d > 1e-4*max(1, lhs) || d < -1e-4*max(1, -lhs, lhs) {
			t.Errorf("%v: <conv(x), v> = %.6g, <x, convT(v)> = %.6g", cc, lhs, rhs)
		}
	}
}
