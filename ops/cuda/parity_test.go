//go:build cuda || cudaemu

package cuda

import (
	"math/rand/v2"
	"testing"

	"wkd/ops"
)

// Every kernel against wkd/ops (the CPU reference) on random data, forward and backward.
// Backward buffers start non-zero, so accumulation (+=) is checked too.

func TestElementwiseParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(1, 2))
	shape := []int{2, 3, 17, 19}
	n := numel(shape)
	type unary struct {
		name string
		cpu  func(tp *ops.Tape, x *ops.Tensor) *ops.Tensor
		fwd  func(y, x *Tensor)
		bwd  func(dx, dy, x, y *Tensor)
	}
	cases := []unary{
		{"ReLU", ops.ReLU, d.ReLU, func(dx, dy, _, y *Tensor) { d.ReLUBackward(dx, dy, y) }},
		{"LeakyReLU", func(tp *ops.Tape, x *ops.Tensor) *ops.Tensor { return ops.LeakyReLU(tp, x, 0.2) },
			func(y, x *Tensor) { d.LeakyReLU(y, x, 0.2) }, func(dx, dy, x, _ *Tensor) { d.LeakyReLUBackward(dx, dy, x, 0.2) }},
		{"Tanh", ops.Tanh, d.Tanh, func(dx, dy, _, y *Tensor) { d.TanhBackward(dx, dy, y) }},
		{"Sigmoid", ops.Sigmoid, d.Sigmoid, func(dx, dy, _, y *Tensor) { d.SigmoidBackward(dx, dy, y) }},
		{"Scale", func(tp *ops.Tape, x *ops.Tensor) *ops.Tensor { return ops.Scale(tp, x, -1.5) },
			func(y, x *Tensor) { d.Scale(y, x, -1.5) }, func(dx, dy, _, _ *Tensor) { d.Axpy(dx, dy, -1.5) }},
	}
	for _, c := range cases {
		xs, gs := randData(r, n), randData(r, n)
		tp := ops.NewTape()
		cx := cpuParam(xs, shape...)
		cy := c.cpu(tp, cx)
		ops.SeedGrad(cy, gs)
		tp.BackwardFrom()

		x, dy := d.FromHost(xs, shape...), d.FromHost(gs, shape...)
		y := d.NewTensor(shape...)
		dx := newGrad(d, r, shape...)
		c.fwd(y, x)
		c.bwd(dx.dev, dy, x, y)
		mustOK(t, d)
		compare(t, c.name, d.ToHost(y), cy.Data)
		dx.check(t, d, c.name+" dx", cx.Grad)
	}

	as, bs := randData(r, n), randData(r, n)
	a, b, out := d.FromHost(as, shape...), d.FromHost(bs, shape...), d.NewTensor(shape...)
	d.Add(out, a, b)
	mustOK(t, d)
	compare(t, "Add", d.ToHost(out), ops.Add(nil, ops.FromData(as, shape...), ops.FromData(bs, shape...)).Data)
}

func TestPadParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		name    string
		reflect bool
		pad     int
	}{{"ReflectionPad2d p3", true, 3}, {"ReflectionPad2d p1", true, 1}, {"ZeroPad2d p1", false, 1}, {"ZeroPad2d p2", false, 2}} {
		shape := []int{2, 3, 7, 9}
		oshape := []int{2, 3, 7 + 2*c.pad, 9 + 2*c.pad}
		xs, gs := randData(r, numel(shape)), randData(r, numel(oshape))
		tp := ops.NewTape()
		cx := cpuParam(xs, shape...)
		var cy *ops.Tensor
		if c.reflect {
			cy = ops.ReflectionPad2d(tp, cx, c.pad)
		} else {
			cy = ops.ZeroPad2d(tp, cx, c.pad)
		}
		ops.SeedGrad(cy, gs)
		tp.BackwardFrom()

		x, dy, y := d.FromHost(xs, shape...), d.FromHost(gs, oshape...), d.NewTensor(oshape...)
		dx := newGrad(d, r, shape...)
		if c.reflect {
			d.ReflectionPad2d(y, x, c.pad)
			d.ReflectionPad2dBackward(dx.dev, dy, c.pad)
		} else {
			d.ZeroPad2d(y, x, c.pad)
			d.ZeroPad2dBackward(dx.dev, dy, c.pad)
		}
		mustOK(t, d)
		compare(t, c.name, d.ToHost(y), cy.Data)
		dx.check(t, d, c.name+" dx", cx.Grad)
	}
}

func TestConvParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		name                string
		x, w                []int
		stride, pad, outPad int
		transpose, bias     bool
	}{
		{"Conv2d 3x3 s1 p1", []int{2, 3, 9, 11}, []int{4, 3, 3, 3}, 1, 1, 0, false, true},
		{"Conv2d 3x3 s2 p1", []int{2, 5, 16, 16}, []int{6, 5, 3, 3}, 2, 1, 0, false, true},
		{"Conv2d 7x7 s1 p0", []int{1, 3, 14, 12}, []int{4, 3, 7, 7}, 1, 0, 0, false, false},
		{"Conv2d 4x4 s2 p1", []int{2, 3, 16, 16}, []int{8, 3, 4, 4}, 2, 1, 0, false, true},
		{"ConvT 3x3 s2 p1 op1", []int{2, 4, 5, 6}, []int{4, 3, 3, 3}, 2, 1, 1, true, true},
		{"ConvT 4x4 s2 p1", []int{1, 3, 6, 5}, []int{3, 2, 4, 4}, 2, 1, 0, true, false},
	} {
		xs, ws, bs := randData(r, numel(c.x)), randData(r, numel(c.w)), randData(r, 8)
		tp := ops.NewTape()
		cx, cw := cpuParam(xs, c.x...), cpuParam(ws, c.w...)
		k := c.w[0]
		if c.transpose {
			k = c.w[1]
		}
		var cb *ops.Tensor
		if c.bias {
			cb = cpuParam(bs[:k], k)
		}
		var cy *ops.Tensor
		if c.transpose {
			cy = ops.ConvTranspose2d(tp, cx, cw, cb, c.stride, c.pad, c.outPad)
		} else {
			cy = ops.Conv2d(tp, cx, cw, cb, c.stride, c.pad)
		}
		gs := randData(r, len(cy.Data))
		ops.SeedGrad(cy, gs)
		tp.BackwardFrom()

		x, w, dy, y := d.FromHost(xs, c.x...), d.FromHost(ws, c.w...), d.FromHost(gs, cy.Shape...), d.NewTensor(cy.Shape...)
		dx, dw := newGrad(d, r, c.x...), newGrad(d, r, c.w...)
		var b *Tensor
		var db gradPair
		if c.bias {
			b, db = d.FromHost(bs[:k], k), newGrad(d, r, k)
		}
		if c.transpose {
			d.ConvTranspose2d(y, x, w, b, c.stride, c.pad, c.outPad)
			d.ConvTranspose2dBackward(dx.dev, dw.dev, db.dev, dy, x, w, c.stride, c.pad, c.outPad)
		} else {
			d.Conv2d(y, x, w, b, c.stride, c.pad)
			d.Conv2dBackward(dx.dev, dw.dev, db.dev, dy, x, w, c.stride, c.pad)
		}
		mustOK(t, d)
		compare(t, c.name, d.ToHost(y), cy.Data)
		dx.check(t, d, c.name+" dx", cx.Grad)
		dw.check(t, d, c.name+" dw", cw.Grad)
		if c.bias {
			db.check(t, d, c.name+" db", cb.Grad)
		}
	}
}

func TestNormParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(7, 8))
	shape := []int{3, 4, 13, 11}
	n, c := shape[0], shape[1]
	for _, affine := range []bool{false, true} {
		xs, gs := randData(r, numel(shape)), randData(r, numel(shape))
		for i := range xs {
			xs[i] = 3*xs[i] + 2 // a mean and a spread away from (0, 1)
		}
		gam, bet := randData(r, c), randData(r, c)
		tp := ops.NewTape()
		cx := cpuParam(xs, shape...)
		var cg, cb *ops.Tensor
		var g, b *Tensor
		var dg, db gradPair
		if affine {
			cg, cb = cpuParam(gam, c), cpuParam(bet, c)
			g, b = d.FromHost(gam, c), d.FromHost(bet, c)
			dg, db = newGrad(d, r, c), newGrad(d, r, c)
		}
		cy := ops.InstanceNorm2d(tp, cx, cg, cb, 1e-5)
		ops.SeedGrad(cy, gs)
		tp.BackwardFrom()

		x, dy, y, stats := d.FromHost(xs, shape...), d.FromHost(gs, shape...), d.NewTensor(shape...), d.NewTensor(2*n*c)
		dx := newGrad(d, r, shape...)
		d.InstanceNorm2d(y, stats, x, g, b, 1e-5)
		d.InstanceNorm2dBackward(dx.dev, dg.dev, db.dev, dy, x, stats, g)
		mustOK(t, d)
		name := "InstanceNorm2d"
		if affine {
			name += " affine"
		}
		compare(t, name, d.ToHost(y), cy.Data)
		dx.check(t, d, name+" dx", cx.Grad)
		if affine {
			dg.check(t, d, name+" dgamma", cg.Grad)
			db.check(t, d, name+" dbeta", cb.Grad)
		}
	}

	for _, training := range []bool{true, false} {
		xs, gs := randData(r, numel(shape)), randData(r, numel(shape))
		gam, bet := randData(r, c), randData(r, c)
		rm, rv := randData(r, c), randData(r, c)
		for i := range rv {
			rv[i] = 0.5 + rv[i]*rv[i]
		}
		tp := ops.NewTape()
		cx, cg, cb := cpuParam(xs, shape...), cpuParam(gam, c), cpuParam(bet, c)
		crm, crv := ops.FromData(append([]float32(nil), rm...), c), ops.FromData(append([]float32(nil), rv...), c)
		cy := ops.BatchNorm2d(tp, cx, cg, cb, crm, crv, training, 0.1, 1e-5)
		ops.SeedGrad(cy, gs)
		tp.BackwardFrom()

		x, dy, y, stats := d.FromHost(xs, shape...), d.FromHost(gs, shape...), d.NewTensor(shape...), d.NewTensor(3*c)
		g, b, grm, grv := d.FromHost(gam, c), d.FromHost(bet, c), d.FromHost(rm, c), d.FromHost(rv, c)
		dx, dg, db := newGrad(d, r, shape...), newGrad(d, r, c), newGrad(d, r, c)
		d.BatchNorm2d(y, stats, x, g, b, grm, grv, training, 0.1, 1e-5)
		d.BatchNorm2dBackward(dx.dev, dg.dev, db.dev, dy, x, stats, g, training)
		mustOK(t, d)
		name := "BatchNorm2d eval"
		if training {
			name = "BatchNorm2d train"
		}
		compare(t, name, d.ToHost(y), cy.Data)
		compare(t, name+" running mean", d.ToHost(grm), crm.Data)
		compare(t, name+" running var", d.ToHost(grv), crv.Data)
		dx.check(t, d, name+" dx", cx.Grad)
		dg.check(t, d, name+" dgamma", cg.Grad)
		db.check(t, d, name+" dbeta", cb.Grad)
	}
}

func TestHaarParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(9, 10))
	for _, shape := range [][]int{{2, 3, 16, 12}, {2, 3, 13, 10}} {
		const levels = 3
		xs := randData(r, numel(shape))
		tp := ops.NewTape()
		cx := cpuParam(xs, shape...)
		cll, chighs := ops.HaarDWT(tp, cx, levels)
		// Gradients into every high band and the last ll.
		var seeds [][]float32
		for _, h := range chighs {
			g := randData(r, len(h.Data))
			ops.SeedGrad(h, g)
			seeds = append(seeds, g)
		}
		gll := randData(r, len(cll.Data))
		ops.SeedGrad(cll, gll)
		tp.BackwardFrom()

		// GPU: level by level, then back.
		x := d.FromHost(xs, shape...)
		ins := []*Tensor{x}
		var lls, his []*Tensor
		cur := x
		for range levels {
			n, c, h, w := cur.NCHW()
			ll, hi := d.NewTensor(n, c, bandSide(h), bandSide(w)), d.NewTensor(n, c, 3, bandSide(h), bandSide(w))
			d.HaarLevel(ll, hi, cur)
			lls, his = append(lls, ll), append(his, hi)
			cur = ll
			ins = append(ins, ll)
		}
		dx := newGrad(d, r, shape...)
		grads := make([]*Tensor, levels+1) // grads[j] is the gradient of ins[j]
		grads[0] = dx.dev
		for j := 1; j <= levels; j++ {
			grads[j] = d.NewTensor(ins[j].Shape...)
		}
		d.Upload(grads[levels], gll)
		for j := levels - 1; j >= 0; j-- {
			dhi := d.FromHost(seeds[j], his[j].Shape...)
			d.HaarLevelBackward(grads[j], grads[j+1], dhi)
		}
		mustOK(t, d)
		name := "HaarDWT " + shapeString(shape)
		for j := range levels {
			compare(t, name+" high "+string(rune('0'+j)), d.ToHost(his[j]), chighs[j].Data)
		}
		compare(t, name+" ll", d.ToHost(lls[levels-1]), cll.Data)
		dx.check(t, d, name+" dx", cx.Grad)

		// The inverse, from the CPU's bands, and its backward.
		tp2 := ops.NewTape()
		pll := cpuParam(cll.Data, cll.Shape...)
		var phs []*ops.Tensor
		for _, h := range chighs {
			phs = append(phs, cpuParam(h.Data, h.Shape...))
		}
		crec := ops.HaarIDWT(tp2, pll, phs)
		grec := randData(r, len(crec.Data))
		ops.SeedGrad(crec, grec)
		tp2.BackwardFrom()

		cur = d.FromHost(cll.Data, cll.Shape...)
		outs := []*Tensor{cur}
		for j := levels - 1; j >= 0; j-- {
			n, c, _, _ := cur.NCHW()
			hi := d.FromHost(chighs[j].Data, chighs[j].Shape...)
			next := d.NewTensor(n, c, 2*hi.Shape[3], 2*hi.Shape[4])
			d.HaarInverseLevel(next, cur, hi)
			cur = next
			outs = append(outs, cur)
		}
		compare(t, "HaarIDWT "+shapeString(shape), d.ToHost(cur), crec.Data)
		// Backward: from the output down to ll and each level's bands.
		g := d.FromHost(grec, cur.Shape...)
		dhis := make([]*Tensor, levels)
		for j := 0; j < levels; j++ {
			in := outs[levels-1-j] // the ll this level read
			dhis[j] = d.NewTensor(chighs[j].Shape...)
			dll := d.NewTensor(in.Shape...)
			d.HaarInverseLevelBackward(dll, dhis[j], g)
			g = dll
		}
		mustOK(t, d)
		compare(t, "HaarIDWT dll", d.ToHost(g), pll.Grad)
		for j := range levels {
			compare(t, "HaarIDWT dhigh "+string(rune('0'+j)), d.ToHost(dhis[j]), phs[j].Grad)
		}
	}
}

func TestLossParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(11, 12))
	shape := []int{2, 1, 30, 30}
	n := numel(shape)
	const up = 1.7 // upstream gradient of the scalar
	for _, c := range []struct {
		kind   LossKind
		cpu    func(tp *ops.Tape, x, y *ops.Tensor) *ops.Tensor
		cpuC   func(tp *ops.Tape, x *ops.Tensor, t float32) *ops.Tensor
		target float32
	}{
		{L1, ops.L1Loss, nil, 0},
		{MSE, ops.MSELoss, ops.MSEConst, 1},
		{BCEWithLogits, ops.BCEWithLogits, ops.BCEWithLogitsConst, 0},
		{BCEWithLogits, ops.BCEWithLogits, ops.BCEWithLogitsConst, 1},
	} {
		xs, ys := randData(r, n), randData(r, n)
		for i := range ys {
			if c.kind == BCEWithLogits {
				ys[i] = float32(r.Float64())
			}
		}
		tp := ops.NewTape()
		cx, cy := cpuParam(xs, shape...), cpuParam(ys, shape...)
		closs := c.cpu(tp, cx, cy)
		ops.SeedGrad(closs, []float32{up})
		tp.BackwardFrom()

		x, y, out, dl := d.FromHost(xs, shape...), d.FromHost(ys, shape...), d.NewTensor(1), d.FromHost([]float32{up}, 1)
		dx, dy := newGrad(d, r, shape...), newGrad(d, r, shape...)
		d.Loss(c.kind, out, x, y, 0)
		d.LossBackward(c.kind, dx.dev, dy.dev, dl, x, y, 0)
		mustOK(t, d)
		name := c.kind.String()
		compare(t, name, d.ToHost(out), closs.Data)
		dx.check(t, d, name+" dx", cx.Grad)
		dy.check(t, d, name+" dy", cy.Grad)

		if c.cpuC == nil {
			continue
		}
		tp = ops.NewTape()
		cx = cpuParam(xs, shape...)
		closs = c.cpuC(tp, cx, c.target)
		ops.SeedGrad(closs, []float32{up})
		tp.BackwardFrom()
		dx = newGrad(d, r, shape...)
		d.Loss(c.kind, out, x, nil, c.target)
		d.LossBackward(c.kind, dx.dev, nil, dl, x, nil, c.target)
		mustOK(t, d)
		name += " const " + shapeString([]int{int(c.target)})
		compare(t, name, d.ToHost(out), closs.Data)
		dx.check(t, d, name+" dx", cx.Grad)
	}
}

func TestAdamParity(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(13, 14))
	cfg := ops.AdamConfig{LR: 2e-4, Beta1: 0.5, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	shapes := [][]int{{16, 3, 3, 3}, {16}, {1000}}
	var cps []*ops.Tensor
	var gps, ggs []*Tensor
	for i, s := range shapes {
		p := ops.NewParam("p"+string(rune('0'+i)), s...)
		copy(p.Data, randData(r, len(p.Data)))
		cps = append(cps, p)
		gps = append(gps, d.FromHost(p.Data, s...))
		ggs = append(ggs, d.NewTensor(s...))
	}
	opt := ops.NewAdam([]ops.ParamGroup{{Params: cps}}, cfg)
	gopt := d.NewAdam(gps, ggs, cfg)
	for range 3 {
		for i, p := range cps {
			g := randData(r, len(p.Data))
			copy(p.Grad, g)
			d.Upload(ggs[i], g)
		}
		opt.Step()
		d.AdamStep(gopt)
	}
	mustOK(t, d)
	for i, p := range cps {
		compare(t, "Adam "+p.Name, d.ToHost(gps[i]), p.Data)
	}
	// Adam moves parameters by about lr per step: compare the steps taken, not only the values.
	st := opt.State()
	for i, p := range cps {
		compare(t, "Adam exp_avg "+p.Name, d.ToHost(gopt.m[i]), st["exp_avg/"+p.Name])
		compare(t, "Adam exp_avg_sq "+p.Name, d.ToHost(gopt.v[i]), st["exp_avg_sq/"+p.Name])
	}
}

func TestBucketRoundTrip(t *testing.T) {
	d := openDevice(t)
	r := rand.New(rand.NewPCG(15, 16))
	b := d.NewBucket([]int{4, 3, 3, 3}, []int{4}, []int{2, 5})
	defer d.FreeBucket(b)
	var want []float32
	for _, v := range b.Tensors {
		data := randData(r, v.Numel())
		d.Upload(v, data)
		want = append(want, data...)
	}
	d.BucketToHost(b)
	mustOK(t, d)
	compare(t, "bucket to host", b.Host, want)
	for i := range b.Host {
		b.Host[i] *= 0.5 // what an all-reduce average of two equal replicas does
	}
	d.BucketFromHost(b)
	got := d.ToHost(b.Tensors[2])
	mustOK(t, d)
	compare(t, "bucket from host", got, b.Host[len(b.Host)-10:])
}
