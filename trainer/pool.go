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
	// copying the whole pool every step: the pool's length then, and each replaced image.
	marked  bool
	markLen int
	journal []poolEdit
}

type poolEdit struct {
	k   int
	old *ops.Tensor
}

// mark starts a new undo journal.
func (p *ImagePool) mark() {
	p.marked, p.markLen = true, len(p.images)
	for i := range p.journal {
		p.journal[i].old = nil
	}
	p.journal = p.journal[:0]
}

// rollback undoes every Query since mark.
func (p *ImagePool) rollback() {
	if !p.marked {
		return
	}
	for i := len(p.journal) - 1; i >= 0; i-- {
		e := p.journal[i]
		ops.CopyData(p.images[e.k], e.old)
	}
	p.images = p.images[:p.markLen]
	p.mark()
}

// NewImagePool returns an empty pool of the given capacity; 0 disables it.
func NewImagePool(size int) *ImagePool { return &ImagePool{size: size} }

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
			if p.marked {
				p.journal = append(p.journal, poolEdit{k, p.images[k].Clone()})
			}
			ops.CopyRange(p.images[k], 0, fake, i*per, per)
		} else {
			ops.CopyRange(out, i*per, fake, i*per, per)
		}
	}
	return out
}

// Len is the number of images held.
func (p *ImagePool) Len() int { return len(p.images) }
