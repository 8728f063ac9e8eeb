package metrics

import (
	"math"

	"wkd/models"
	"wkd/ops"
)

// InceptionFeatures returns the FID Inception's features (dims: one of models.InceptionDims,
// 2048 for FID and KID) of images of any size, gray or RGB, in [-1, 1]: each is mapped to
// [0, 1] in 8-bit steps as the reference saves its outputs before FID is computed on them (gray
// repeated to RGB, as pytorch-fid's loader converts to RGB), and the network resizes it to
// 299x299. Images of one size go through in batches of up to batch; progress,
// when not nil, hears the count done after each batch.
func InceptionFeatures(net *models.Inception, images []Image, dims, batch int, progress func(done, total int)) [][]float32 {
	out := make([][]float32, len(images))
	for i := range out {
		out[i] = make([]float32, dims)
	}
	done := 0
	for lo := 0; lo < len(images); {
		// A batch is a run of consecutive images of one size.
		hi := lo + 1
		for hi < len(images) && hi-lo < batch && images[hi].H == images[lo].H && images[hi].W == images[lo].W {
			hi++
		}
		h, w := images[lo].H, images[lo].W
		x := ops.New(hi-lo, 3, h, w)
		for i, im := range images[lo:hi] {
			plane := h * w
			for c := range 3 {
				src := im.Pix[min(c, im.C-1)*plane : (min(c, im.C-1)+1)*plane]
				dst := x.Data[(i*3+c)*plane : (i*3+c+1)*plane]
				for k, v := range src {
					dst[k] = to8Bit(v)
				}
			}
		}
		net.Features(x, dims, out[lo:hi])
		done += hi - lo
		if progress != nil {
			progress(done, len(images))
		}
		lo = hi
	}
	return out
}

// to8Bit is what an image value in [-1, 1] becomes in a PNG saved by the reference's
// tensor2im, over 255: (v+1)/2*255 truncated to an integer. A value read from an 8-bit file
// (k/127.5 - 1 in float32) can land a hair below k, so the truncation allows 1e-3 for it.
func to8Bit(v float32) float32 {
	q := math.Floor(float64(v+1)*127.5 + 1e-3)
	return float32(math.Max(0, math.Min(255, q))) / 255
}
