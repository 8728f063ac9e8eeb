package trainer

import "wkd/ops"

// ImagePool is the reference's history of generated images (Shrivastava et al.): once full,
// each query returns, with probability one half, an older fake in place of the new one (which
// takes its place), so the discriminator also sees the generator's past.
type ImagePool struct {
	size   int
	images []*ops.Tensor // each one image (C, H, W), where the fakes are (host or device)
	shape  [3]int
	// An undo journal since mark(), so a replica can roll an abandoned step back without
	// copying the whole pool every step: the pool's length then, and the images replaced
	// since, each saved once (its first replacement) into a copy of saved, in order. The
	// copies are reused at every mark: at most one per image, allocated once.
	marked    bool
	markLen   int
	journal   []int  // the replaced images; journal[j]'s values at mark are in saved[j]
	journaled []bool // (image) already in the journal
	saved     []*ops.Tensor
}

// mark starts a new undo journal.
func (p *ImagePool) mark() {
	p.marked, p.markLen = true, len(p.images)
	p.journal = p.journal[:0]
	clear(p.journaled)
}

// rollback undoes every Query since mark.
func (p *ImagePool) rollback() {
	if !p.marked {
		return
	}
	for j, k := range p.journal {
		ops.CopyData(p.images[k], p.saved[j])
	}
	p.images = p.images[:p.markLen]
	p.mark()
}

// save journals image k's values before its first replacement since mark. Images added since
// mark need none: rollback drops them.
func (p *ImagePool) save(k int) {
	if !p.marked || k >= p.markLen || p.journaled[k] {
		return
	}
	img := p.images[k]
	j := len(p.journal)
	if j == len(p.saved) {
		p.saved = append(p.saved, nil)
	}
	if c := p.saved[j]; c == nil || c.Numel() != img.Numel() || c.Device() != img.Device() {
		p.saved[j] = ops.NewLike(img)
	}
	ops.CopyData(p.saved[j], img)
	p.journal = append(p.journal, k)
	p.journaled[k] = true
}

// NewImagePool returns an empty pool of the given capacity; 0 disables it.
func NewImagePool(size int) *ImagePool {
	return &ImagePool{size: size, journaled: make([]bool, size)}
}

// Query returns the batch the discriminator sees in place of fake: (N, C, H, W). The returned
// tensor is drawn from the tape's arena and carries no gradient.
func (p *ImagePool) Query(tp *ops.Tape, fake *ops.Tensor, rng *ops.RNG) *ops.Tensor {
	if p.size == 0 {
		return tp.Detach(fake)
	}
	n, c, h, w := fake.NCHW()
	per := c * h * w
	out := tp.AllocOn(fake.Device(), n, c, h, w)
	p.shape = [3]int{c, h, w}
	for i := range n {
		if len(p.images) < p.size {
			img := ops.NewOn(fake.Device(), c, h, w)
			ops.CopyRange(img, 0, fake, i*per, per)
			p.images = append(p.images, img)
			ops.CopyRange(out, i*per, fake, i*per, per)
			continue
		}
		if rng.Float32() > 0.5 {
			k := rng.IntN(p.size)
			ops.CopyRange(out, i*per, p.images[k], 0, per)
			p.save(k)
			ops.CopyRange(p.images[k], 0, fake, i*per, per)
		} else {
			ops.CopyRange(out, i*per, fake, i*per, per)
		}
	}
	return out
}

// Len is the number of images held.
func (p *ImagePool) Len() int { return len(p.images) }
