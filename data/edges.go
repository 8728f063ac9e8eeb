package data

import "math"

// EdgeParams tune EdgeMap, a Canny detector standing in for the HED edges that edges2shoes
// was made with: both give thin dark contour lines on white.
type EdgeParams struct {
	// Sigma is the Gaussian blur's standard deviation in pixels: larger keeps only the outline,
	// smaller adds texture lines.
	Sigma float64
	// High is the strong-edge threshold as a fraction of the image's largest gradient; Low is
	// the weak-edge threshold as a fraction of High (hysteresis: weak pixels count only when
	// connected to strong ones).
	High, Low float64
}

// DefaultEdgeParams suits 28-64 pixel product images.
func DefaultEdgeParams() EdgeParams { return EdgeParams{Sigma: 0.8, High: 0.15, Low: 0.4} }

// EdgeMap runs Canny edge detection on an 8-bit grayscale image and returns an 8-bit image with
// edges 0 (black) on 255 (white):
//  1. Gaussian blur (radius ceil(3 sigma), borders replicated),
//  2. Sobel gradients,
//  3. non-maximum suppression along the gradient direction (quantised to 0/45/90/135 degrees),
//     which thins edges to one pixel,
//  4. hysteresis between Low*High*max and High*max, 8-connected.
//
// gray: (H, W)
func EdgeMap(gray []uint8, w, h int, p EdgeParams) []uint8 {
	n := w * h
	img := make([]float64, n)
	for i, v := range gray[:n] {
		img[i] = float64(v)
	}
	img = gaussianBlur(img, w, h, p.Sigma)
	at := func(x, y int) float64 { return img[clampInt(y, 0, h-1)*w+clampInt(x, 0, w-1)] }
	mag := make([]float64, n)
	dir := make([]uint8, n) // 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
	maxMag := 0.0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			gx := at(x+1, y-1) + 2*at(x+1, y) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x-1, y) - at(x-1, y+1)
			gy := at(x-1, y+1) + 2*at(x, y+1) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x, y-1) - at(x+1, y-1)
			m := math.Hypot(gx, gy)
			mag[y*w+x] = m
			maxMag = math.Max(maxMag, m)
			ang := math.Atan2(gy, gx) * 180 / math.Pi
			if ang < 0 {
				ang += 180
			}
			dir[y*w+x] = uint8(int(math.Floor((ang+22.5)/45)) % 4)
		}
	}
	// neighbour offsets along the gradient for each direction bin (image y grows downwards)
	off := [4][2]int{{1, 0}, {1, 1}, {0, 1}, {-1, 1}}
	magAt := func(x, y int) float64 {
		if x < 0 || y < 0 || x >= w || y >= h {
			return 0
		}
		return mag[y*w+x]
	}
	thin := make([]float64, n)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m := mag[y*w+x]
			o := off[dir[y*w+x]]
			if m >= magAt(x+o[0], y+o[1]) && m > magAt(x-o[0], y-o[1]) {
				thin[y*w+x] = m
			}
		}
	}
	// A floor of one gray level's Sobel response keeps float noise of flat images out.
	high := math.Max(p.High*maxMag, 4)
	low := p.Low * high
	out := make([]uint8, n)
	for i := range out {
		out[i] = 255
	}
	stack := []int{}
	for i, m := range thin {
		if m >= high {
			out[i] = 0
			stack = append(stack, i)
		}
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x, y := i%w, i/w
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				xx, yy := x+dx, y+dy
				if xx < 0 || yy < 0 || xx >= w || yy >= h {
					continue
				}
				j := yy*w + xx
				if out[j] == 255 && thin[j] >= low && thin[j] > 0 {
					out[j] = 0
					stack = append(stack, j)
				}
			}
		}
	}
	return out
}

func gaussianBlur(img []float64, w, h int, sigma float64) []float64 {
	if sigma <= 0 {
		return img
	}
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	sum := 0.0
	for i := range k {
		d := float64(i - r)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	tmp := make([]float64, len(img))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := 0.0
			for i, kv := range k {
				s += kv * img[y*w+clampInt(x+i-r, 0, w-1)]
			}
			tmp[y*w+x] = s
		}
	}
	out := make([]float64, len(img))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := 0.0
			for i, kv := range k {
				s += kv * tmp[clampInt(y+i-r, 0, h-1)*w+x]
			}
			out[y*w+x] = s
		}
	}
	return out
}

func clampInt(v, lo, hi int) int { return max(lo, min(v, hi)) }
