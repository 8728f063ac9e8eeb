//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"wkd/ops"
)

// Every wkd/ops function through the device seam: the same op on host tensors and on tensors
// of this backend (Device.Backend), recorded on a tape each, backpropagated from a loss that
// gives every output element its own gradient. Outputs and the gradients of every input must
// agree within tol; BatchNorm's running statistics too.
func TestOpsThroughTheSeam(t *testing.T) {
	dev := openDevice(t).Backend()
	type opCase struct {
		name   string
		shapes [][]int
		// positive marks inputs drawn in (0.1, 1.1) (BCE targets); the rest are normal.
		positive map[int]bool
		f        func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor
	}
	img := []int{2, 3, 6, 6}
	vec := []int{3}
	cases := []opCase{
		{name: "Add", shapes: [][]int{img, img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Add(tp, in[0], in[1]) }},
		{name: "Sub", shapes: [][]int{img, img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Sub(tp, in[0], in[1]) }},
		{name: "Scale", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Scale(tp, in[0], -1.5) }},
		{name: "AddScalar", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.AddScalar(tp, in[0], 0.3) }},
		{name: "Concat", shapes: [][]int{img, {2, 5, 6, 6}}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Concat(tp, in[0], in[1]) }},
		{name: "ReLU", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.ReLU(tp, in[0]) }},
		{name: "LeakyReLU", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.LeakyReLU(tp, in[0], 0.2) }},
		{name: "Tanh", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Tanh(tp, in[0]) }},
		{name: "Sigmoid", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Sigmoid(tp, in[0]) }},
		{name: "Sum", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Sum(tp, in[0]) }},
		{name: "Mean", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.Mean(tp, in[0]) }},
		{name: "L1Loss", shapes: [][]int{img, img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.L1Loss(tp, in[0], in[1]) }},
		{name: "MSELoss", shapes: [][]int{img, img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.MSELoss(tp, in[0], in[1]) }},
		{name: "MSEConst", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.MSEConst(tp, in[0], 1) }},
		{name: "BCEWithLogits", shapes: [][]int{img, img}, positive: map[int]bool{1: true}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.BCEWithLogits(tp, in[0], in[1])
		}},
		{name: "BCEWithLogitsConst", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.BCEWithLogitsConst(tp, in[0], 0) }},
		{name: "Conv2d", shapes: [][]int{img, {4, 3, 3, 3}, {4}}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.Conv2d(tp, in[0], in[1], in[2], 2, 1)
		}},
		{name: "Conv2d no bias", shapes: [][]int{img, {4, 3, 4, 4}}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.Conv2d(tp, in[0], in[1], nil, 1, 1)
		}},
		{name: "ConvTranspose2d", shapes: [][]int{img, {3, 4, 3, 3}, {4}}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.ConvTranspose2d(tp, in[0], in[1], in[2], 2, 1, 1)
		}},
		{name: "ReflectionPad2d", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.ReflectionPad2d(tp, in[0], 2) }},
		{name: "ZeroPad2d", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor { return ops.ZeroPad2d(tp, in[0], 1) }},
		{name: "InstanceNorm2d", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.InstanceNorm2d(tp, in[0], nil, nil, 1e-5)
		}},
		{name: "InstanceNorm2d affine", shapes: [][]int{img, vec, vec}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.InstanceNorm2d(tp, in[0], in[1], in[2], 1e-5)
		}},
		{name: "BatchNorm2d eval", shapes: [][]int{img, vec, vec}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			mean, vari := ops.NewOn(in[0].Device(), 3), ops.NewOn(in[0].Device(), 3)
			mean.CopyFromHost([]float32{0.1, -0.2, 0.3})
			vari.CopyFromHost([]float32{0.5, 1.5, 2})
			return ops.BatchNorm2d(tp, in[0], in[1], in[2], mean, vari, false, 0.1, 1e-5)
		}},
		{name: "HaarDWT", shapes: [][]int{{2, 3, 8, 8}}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			ll, hs := ops.HaarDWT(tp, in[0], 2)
			return ops.Add(tp, ops.MSEConst(tp, ll, 0.1), ops.Add(tp, ops.L1Loss(tp, hs[0], tp.Detach(hs[0])), ops.MSEConst(tp, hs[1], -0.2)))
		}},
		{name: "HaarIDWT", shapes: [][]int{{2, 3, 3, 3}, {2, 3, 3, 3, 3}, {2, 3, 3, 6, 6}}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.HaarIDWT(tp, in[0], []*ops.Tensor{in[2], in[1]})
		}},
		{name: "Dropout", shapes: [][]int{img}, f: func(tp *ops.Tape, in []*ops.Tensor) *ops.Tensor {
			return ops.Dropout(tp, in[0], 0.5, true, ops.NewRNG(7))
		}},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 1))
			var host, devIn []*ops.Tensor
			for i, s := range c.shapes {
				x := ops.New(s...)
				for k := range x.Data {
					if c.positive[i] {
						x.Data[k] = 0.1 + r.Float32()
					} else {
						x.Data[k] = float32(r.NormFloat64())
					}
				}
				d := ops.NewOn(dev, s...)
				d.CopyFromHost(x.Data)
				x.SetRequiresGrad(true)
				d.SetRequiresGrad(true)
				host, devIn = append(host, x), append(devIn, d)
			}
			run := func(in []*ops.Tensor, target []float32) (*ops.Tensor, []float32) {
				tp := ops.NewTape()
				out := c.f(tp, in)
				if out.OnDevice() != in[0].OnDevice() {
					t.Fatalf("output on %v, inputs on %v", out.Device(), in[0].Device())
				}
				loss := ops.Scale(tp, out, 1.7)
				if out.Numel() > 1 {
					tgt := ops.NewOn(out.Device(), out.Shape...)
					tgt.CopyFromHost(target[:out.Numel()])
					loss = ops.MSELoss(tp, out, tgt)
				}
				tp.Backward(loss)
				return out, loss.HostData()
			}
			target := make([]float32, 4096)
			for k := range target {
				target[k] = float32(r.NormFloat64())
			}
			oh, lh := run(host, target)
			od, ld := run(devIn, target)
			compare(t, "output", od.HostData(), oh.HostData())
			compare(t, "loss", ld, lh)
			for i := range host {
				if !host[i].HasGrad() || !devIn[i].HasGrad() {
					t.Fatalf("input %d got no gradient (host %v, device %v)", i, host[i].HasGrad(), devIn[i].HasGrad())
				}
				compare(t, fmt.Sprintf("grad %d", i), devIn[i].HostGrad(), host[i].HostGrad())
			}
			if err := dev.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BatchNorm2d in training mode also updates the running statistics on the device.
func TestBatchNormTrainingThroughTheSeam(t *testing.T) {
	dev := openDevice(t).Backend()
	r := rand.New(rand.NewPCG(9, 9))
	x := ops.New(2, 3, 5, 5)
	for k := range x.Data {
		x.Data[k] = float32(r.NormFloat64())*2 + 1
	}
	gamma, beta := ops.NewParam("g", 3), ops.NewParam("b", 3)
	gamma.Fill(1.2)
	beta.Fill(-0.1)
	mean, vari := ops.New(3), ops.New(3)
	vari.Fill(1)
	xd, gd, bd, md, vd := x.Clone(), gamma.Clone(), beta.Clone(), mean.Clone(), vari.Clone()
	for _, t := range []*ops.Tensor{xd, gd, bd, md, vd} {
		t.MoveTo(dev)
	}
	x.SetRequiresGrad(true)
	xd.SetRequiresGrad(true)
	gd.SetRequiresGrad(true)
	bd.SetRequiresGrad(true)
	for _, side := range [][5]*ops.Tensor{{x, gamma, beta, mean, vari}, {xd, gd, bd, md, vd}} {
		tp := ops.NewTape()
		y := ops.BatchNorm2d(tp, side[0], side[1], side[2], side[3], side[4], true, 0.1, 1e-5)
		tp.Backward(ops.MSEConst(tp, ops.Tanh(tp, y), 0.3))
	}
	compare(t, "running mean", md.HostData(), mean.Data)
	compare(t, "running var", vd.HostData(), vari.Data)
	compare(t, "dx", xd.HostGrad(), x.Grad)
	compare(t, "dgamma", gd.HostGrad(), gamma.Grad)
	compare(t, "dbeta", bd.HostGrad(), beta.Grad)
}
