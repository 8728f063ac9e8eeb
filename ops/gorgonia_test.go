package ops

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"wkd/internal/torchref"
)

// gorgonia v0.9.18 serves as a second, independent oracle beside PyTorch: its Conv2d, activations
// and symbolic autodiff must agree with ours on the same data. Only the pieces DESIGN.md found
// sound are used (no multi-axis reductions: the loss is a 1-D weighted sum).

type gorgoniaAct struct {
	name string
	ours func(tp *Tape, x *Tensor) *Tensor
	its  func(x *G.Node) (*G.Node, error)
}

var gorgoniaActs = []gorgoniaAct{
	{"identity", func(_ *Tape, x *Tensor) *Tensor { return x }, func(x *G.Node) (*G.Node, error) { return x, nil }},
	{"ReLU", ReLU, G.Rectify},
	{"LeakyReLU(0.2)", func(tp *Tape, x *Tensor) *Tensor { return LeakyReLU(tp, x, 0.2) }, func(x *G.Node) (*G.Node, error) { return G.LeakyRelu(x, 0.2) }},
	{"Tanh", Tanh, G.Tanh},
	{"Sigmoid", Sigmoid, G.Sigmoid},
}

// gorgoniaConvAct runs act(conv2d(x, w) + b) in gorgonia and returns the output and the
// gradients of sum(out * u) with respect to x, w and b.
func gorgoniaConvAct(t *testing.T, x, w, b, u *Tensor, stride, pad int, act func(*G.Node) (*G.Node, error)) (y, dx, dw, db []float32) {
	t.Helper()
	g := G.NewGraph()
	node := func(v *Tensor, name string) *G.Node {
		backing := tensor.New(tensor.WithShape(v.Shape...), tensor.WithBacking(slices.Clone(v.Data)))
		return G.NewTensor(g, tensor.Float32, len(v.Shape), G.WithShape(v.Shape...), G.WithName(name), G.WithValue(backing))
	}
	xn, wn := node(x, "x"), node(w, "w")
	bn := node(FromData(b.Data, 1, b.Numel(), 1, 1), "b")
	un := G.NewVector(g, tensor.Float32, G.WithShape(u.Numel()), G.WithName("u"),
		G.WithValue(tensor.New(tensor.WithShape(u.Numel()), tensor.WithBacking(slices.Clone(u.Data)))))
	conv, err := G.Conv2d(xn, wn, tensor.Shape{w.Shape[2], w.Shape[3]}, []int{pad, pad}, []int{stride, stride}, []int{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	biased, err := G.BroadcastAdd(conv, bn, nil, []byte{0, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	out, err := act(biased)
	if err != nil {
		t.Fatal(err)
	}
	flat, err := G.Reshape(out, tensor.Shape{u.Numel()})
	if err != nil {
		t.Fatal(err)
	}
	prod, err := G.HadamardProd(flat, un)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := G.Sum(prod)
	if err != nil {
		t.Fatal(err)
	}
	grads, err := G.Grad(cost, xn, wn, bn)
	if err != nil {
		t.Fatal(err)
	}
	var yv, dxv, dwv, dbv G.Value
	G.Read(out, &yv)
	G.Read(grads[0], &dxv)
	G.Read(grads[1], &dwv)
	G.Read(grads[2], &dbv)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	data := func(v G.Value) []float32 { return slices.Clone(v.Data().([]float32)) }
	return data(yv), data(dxv), data(dwv), data(dbv)
}

func TestConvActivationsMatchGorgonia(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	worst := 0.0
	for _, geo := range []struct{ n, c, h, w, k, kh, stride, pad int }{
		{2, 3, 9, 9, 4, 3, 1, 1},
		{2, 3, 9, 8, 4, 3, 2, 1},
		{1, 2, 10, 10, 3, 4, 2, 1}, // the PatchGAN / encoder 4x4 stride-2 shape
		{1, 4, 7, 7, 2, 1, 1, 0},
	} {
		x := randTensor(r, geo.n, geo.c, geo.h, geo.w)
		w := randTensor(r, geo.k, geo.c, geo.kh, geo.kh)
		b := randTensor(r, geo.k)
		for _, act := range gorgoniaActs {
			name := fmt.Sprintf("%s(conv %v k%d s%d p%d)", act.name, x.Shape, geo.kh, geo.stride, geo.pad)
			x.SetRequiresGrad(true)
			w.SetRequiresGrad(true)
			b.SetRequiresGrad(true)
			x.ZeroGrad()
			w.ZeroGrad()
			b.ZeroGrad()
			tp := NewTape()
			y := act.ours(tp, Conv2d(tp, x, w, b, geo.stride, geo.pad))
			u := randTensor(r, y.Shape...)
			tp.Backward(weightedSum(tp, y, u))

			gy, gdx, gdw, gdb := gorgoniaConvAct(t, x, w, b, u, geo.stride, geo.pad, act.its)
			for _, c := range []struct {
				what      string
				ours, its []float32
			}{{"output", y.Data, gy}, {"dx", x.Grad, gdx}, {"dw", w.Grad, gdw}, {"db", b.Grad, gdb}} {
				e := torchref.RelErr(c.ours, c.its)
				worst = max(worst, e)
				if e > 1e-4 {
					t.Errorf("%s: %s relative error vs gorgonia %.3g > 1e-4", name, c.what, e)
				}
			}
		}
	}
	t.Logf("worst relative error vs gorgonia over conv+bias+activation outputs and gradients: %.3g", worst)
}
