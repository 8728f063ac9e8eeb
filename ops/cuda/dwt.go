//go:build cuda || cudaemu

package cuda

// One level of the 2-D Haar DWT as pytorch_wavelets' DWTForward(J, 'haar', mode='zero') and
// DWTInverse compute it (see wkd/ops/dwt.go). A J-level transform applies HaarLevel to the
// previous level's ll; each one's backward is its adjoint.

// bandSide is ceil(n/2): an odd side is padded with one zero.
func bandSide(n int) int { return (n + 1) / 2 }

// HaarLevel: ll and the three high bands (LH, HL, HH) of x.
// x: (N, C, H, W); ll: (N, C, HO, WO); hi: (N, C, 3, HO, WO), HO = ceil(H/2)
func (d *Device) HaarLevel(ll, hi, x *Tensor) {
	n, c, h, w := x.NCHW()
	ho, wo := bandSide(h), bandSide(w)
	mustShape("HaarLevel", "ll", ll, n, c, ho, wo)
	mustShape("HaarLevel", "high bands", hi, n, c, 3, ho, wo)
	d.launch(kHaarAnalysis, n*c*ho*wo, ptrArg(ll), ptrArg(hi), ptrArg(x), intArg(n*c), intArg(h), intArg(w),
		intArg(ho), intArg(wo), intArg(ho), intArg(wo), 0)
}

// HaarLevelBackward: dx += the synthesis of (dll, dhi) cropped to x's size. dll or dhi may be
// nil (a loss that reads only the high bands).
func (d *Device) HaarLevelBackward(dx, dll, dhi *Tensor) {
	n, c, h, w := dx.NCHW()
	ho, wo := bandSide(h), bandSide(w)
	if dll != nil {
		mustShape("HaarLevelBackward", "ll gradient", dll, n, c, ho, wo)
	}
	if dhi != nil {
		mustShape("HaarLevelBackward", "high band gradient", dhi, n, c, 3, ho, wo)
	}
	d.launch(kHaarSynthesis, dx.n, ptrArg(dx), ptrArg(dll), ptrArg(dhi), intArg(n*c), intArg(h), intArg(w),
		intArg(ho), intArg(wo), intArg(ho), intArg(wo), 1)
}

// HaarInverseLevel rebuilds x from ll and hi; ll may be one row/column larger than the bands
// (an odd level below), and the extra is dropped, like DWTInverse.
// ll: (N, C, LH, LW), LH in {HO, HO+1}; hi: (N, C, 3, HO, WO); x: (N, C, 2*HO, 2*WO)
func (d *Device) HaarInverseLevel(x, ll, hi *Tensor) {
	n, c, llh, llw := ll.NCHW()
	ho, wo := hi.Shape[3], hi.Shape[4]
	mustShape("HaarInverseLevel", "high bands", hi, n, c, 3, ho, wo)
	mustLLSide("HaarInverseLevel", ll, llh, llw, ho, wo)
	mustShape("HaarInverseLevel", "output", x, n, c, 2*ho, 2*wo)
	d.launch(kHaarSynthesis, x.n, ptrArg(x), ptrArg(ll), ptrArg(hi), intArg(n*c), intArg(2*ho), intArg(2*wo),
		intArg(ho), intArg(wo), intArg(llh), intArg(llw), 0)
}

// HaarInverseLevelBackward: dll, dhi += the analysis of dx (either may be nil); an extra ll
// row/column gets no gradient.
func (d *Device) HaarInverseLevelBackward(dll, dhi, dx *Tensor) {
	n, c, h, w := dx.NCHW()
	ho, wo := h/2, w/2
	llh, llw := ho, wo
	if dll != nil {
		_, _, llh, llw = dll.NCHW()
		mustLLSide("HaarInverseLevelBackward", dll, llh, llw, ho, wo)
	}
	if dhi != nil {
		mustShape("HaarInverseLevelBackward", "high band gradient", dhi, n, c, 3, ho, wo)
	}
	d.launch(kHaarAnalysis, n*c*ho*wo, ptrArg(dll), ptrArg(dhi), ptrArg(dx), intArg(n*c), intArg(h), intArg(w),
		intArg(ho), intArg(wo), intArg(llh), intArg(llw), 1)
}

func mustLLSide(op string, ll *Tensor, llh, llw, ho, wo int) {
	if llh != ho && llh != ho+1 || llw != wo && llw != wo+1 {
		panic("cuda: " + op + ": ll " + shapeString(ll.Shape) + " does not fit high bands of side " +
			shapeString([]int{ho, wo}))
	}
}
