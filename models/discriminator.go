package models

// newNLayer builds the reference's NLayerDiscriminator as a Sequential named "model":
// Conv 4x4 s2 p1 (bias) + LeakyReLU(0.2); nLayers-1 more stride-2 convs, widths ndf*min(2^n, 8),
// each with norm and LeakyReLU; one stride-1 conv 4x4 p1 + norm + LeakyReLU; a final stride-1
// conv 4x4 p1 to one channel (bias), the patch logits. With nLayers 3 each output sees a 70x70
// patch of the input.
func newNLayer(bd *builder, s Spec) layer {
	bias := s.Norm == Instance
	ndf := s.NDF
	m := &seq{}
	add := func(l ...layer) { m.items = append(m.items, l...) }
	add(newConv(bd, s.InputNC, ndf, 4, 2, 1, true), actLeaky)
	mult := 1
	for n := 1; n < s.NLayers; n++ {
		prev := mult
		mult = min(1<<n, 8)
		add(newConv(bd, ndf*prev, ndf*mult, 4, 2, 1, bias), newNorm(bd, s.Norm, ndf*mult), actLeaky)
	}
	prev := mult
	mult = min(1<<s.NLayers, 8)
	add(newConv(bd, ndf*prev, ndf*mult, 4, 1, 1, bias), newNorm(bd, s.Norm, ndf*mult), actLeaky)
	add(newConv(bd, ndf*mult, 1, 4, 1, 1, true))
	return m
}

// newPixel builds the reference's PixelDiscriminator (1x1 PatchGAN) as a Sequential named
// "net": Conv 1x1 in->ndf (bias), LeakyReLU(0.2), Conv 1x1 ndf->2ndf, norm, LeakyReLU(0.2),
// Conv 1x1 2ndf->1. Both later convs have a bias only with instance norm, as in the reference.
func newPixel(bd *builder, s Spec) layer {
	bias := s.Norm == Instance
	ndf := s.NDF
	return &seq{items: []layer{
		newConv(bd, s.InputNC, ndf, 1, 1, 0, true), actLeaky,
		newConv(bd, ndf, ndf*2, 1, 1, 0, bias), newNorm(bd, s.Norm, ndf*2), actLeaky,
		newConv(bd, ndf*2, 1, 1, 1, 0, bias),
	}}
}
