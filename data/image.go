package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	_ "image/png"  // registers the PNG decoder for image.Decode
	"os"
)

// plane is an 8-bit image stored channel-planar: pix[c*H*W + y*W + x].
type plane struct {
	c, h, w int
	pix     []uint8 // pix: (C, H, W)
}

func newPlane(c, h, w int) *plane { return &plane{c: c, h: h, w: w, pix: make([]uint8, c*h*w)} }

// decodeFile reads and decodes a PNG or JPEG (sniffed from its content, not its name) and
// converts it to RGB the way PIL's Image.convert('RGB') does: gray is replicated, alpha is
// dropped without compositing, palettes are looked up.
func decodeFile(path string) (*plane, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptImage, path, err)
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (re-export or delete the file)", ErrCorruptImage, path, err)
	}
	return toRGB(img), nil
}

func toRGB(img image.Image) *plane {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	p := newPlane(3, h, w)
	n := h * w
	r, g, bl := p.pix[:n], p.pix[n:2*n], p.pix[2*n:]
	switch m := img.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			copy(r[y*w:], row)
			copy(g[y*w:], row)
			copy(bl[y*w:], row)
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < w; x++ {
				r[y*w+x], g[y*w+x], bl[y*w+x] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < w; x++ {
				r[y*w+x], g[y*w+x], bl[y*w+x] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	case *image.YCbCr:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				r[y*w+x], g[y*w+x], bl[y*w+x] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
	default:
		// Paletted, 16-bit, CMYK: go through non-premultiplied 8-bit RGBA (16-bit keeps the high byte).
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				r[y*w+x], g[y*w+x], bl[y*w+x] = c.R, c.G, c.B
			}
		}
	}
	return p
}

// gray converts RGB to one channel with PIL's convert('L'): ITU-R 601-2 luma
// L = R*299/1000 + G*587/1000 + B*114/1000 in 16-bit fixed point, rounded.
func (p *plane) gray() *plane {
	if p.c == 1 {
		return p
	}
	n := p.h * p.w
	out := newPlane(1, p.h, p.w)
	for i := 0; i < n; i++ {
		v := uint32(p.pix[i])*19595 + uint32(p.pix[n+i])*38470 + uint32(p.pix[2*n+i])*7471 + 0x8000
		out.pix[i] = uint8(v >> 16)
	}
	return out
}

// crop returns the w x h window at (x0, y0); parts outside p are black (0), as PIL's crop.
func (p *plane) crop(x0, y0, w, h int) *plane {
	out := newPlane(p.c, h, w)
	xa, xb := max(x0, 0), min(x0+w, p.w) // the columns inside p
	if xa >= xb {
		return out
	}
	for c := 0; c < p.c; c++ {
		for y := max(y0, 0); y < min(y0+h, p.h); y++ {
			copy(out.pix[c*h*w+(y-y0)*w+xa-x0:], p.pix[c*p.h*p.w+y*p.w+xa:c*p.h*p.w+y*p.w+xb])
		}
	}
	return out
}

// flipX mirrors p left to right in place.
func (p *plane) flipX() {
	for row := 0; row < p.c*p.h; row++ {
		r := p.pix[row*p.w : row*p.w+p.w]
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
	}
}

// toFloat writes p into dst as x/255*2-1, in the float32 steps torchvision takes.
// dst: (C, H, W)
func (p *plane) toFloat(dst []float32) {
	for i, v := range p.pix {
		dst[i] = (float32(v)/255 - 0.5) / 0.5 // torch: ToTensor div(255), Normalize sub(0.5).div(0.5)
	}
}
