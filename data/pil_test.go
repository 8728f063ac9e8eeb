package data

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// runPIL runs script with /usr/bin/python3 (Debian's, which has Pillow); a missing Pillow fails
// the test rather than skipping it.
func runPIL(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 with Pillow failed (install with: apt-get install python3-pil): %v\n%s", err, stderr.String())
	}
	return out
}

const pilResizeScript = `
import sys, struct
from PIL import Image
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<I', raw[:4])[0]
off = 4
out = bytearray()
for _ in range(n):
    mode_c, w, h, ow, oh = struct.unpack('<5I', raw[off:off+20]); off += 20
    mode = 'L' if mode_c == 1 else 'RGB'
    size = w*h*mode_c
    im = Image.frombytes(mode, (w, h), raw[off:off+size]); off += size
    out += im.resize((ow, oh), Image.BICUBIC).tobytes()
    out += im.convert('L').tobytes()
sys.stdout.buffer.write(out)
`

// interleave converts a planar plane to PIL's interleaved bytes.
func interleave(p *plane) []byte {
	n := p.h * p.w
	out := make([]byte, 0, p.c*n)
	for i := 0; i < n; i++ {
		for c := 0; c < p.c; c++ {
			out = append(out, p.pix[c*n+i])
		}
	}
	return out
}

func TestResizeMatchesPillowBicubic(t *testing.T) {
	type tc struct{ c, w, h, ow, oh int }
	cases := []tc{
		{3, 28, 28, 32, 32}, {1, 28, 28, 32, 32}, // upscale (dataset builder)
		{3, 64, 64, 32, 32}, {3, 71, 53, 32, 32}, // downscale, antialiased
		{3, 30, 30, 36, 36}, {1, 17, 9, 5, 23}, // mixed directions
		{3, 40, 20, 40, 31}, {3, 33, 20, 12, 20}, // one axis only
		{3, 256, 256, 286, 286}, // the reference's load size
		{1, 1, 1, 4, 3}, {3, 5, 3, 1, 1},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, uint32(len(cases)))
	var planes []*plane
	for i, c := range cases {
		p := newPlane(c.c, c.h, c.w)
		for j := range p.pix {
			switch {
			case i%3 == 0: // smooth image with hard edges: exercises clipping of overshoot
				x := (j % (c.h * c.w)) % c.w
				if x < c.w/2 {
					p.pix[j] = 0
				} else {
					p.pix[j] = 255
				}
			default:
				p.pix[j] = uint8(rng.IntN(256))
			}
		}
		planes = append(planes, p)
		binary.Write(&buf, binary.LittleEndian, []uint32{uint32(c.c), uint32(c.w), uint32(c.h), uint32(c.ow), uint32(c.oh)})
		buf.Write(interleave(p))
	}
	in := filepath.Join(t.TempDir(), "in.bin")
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	want := runPIL(t, pilResizeScript, in)
	off := 0
	for i, c := range cases {
		got := interleave(planes[i].resize(c.ow, c.oh))
		n := c.ow * c.oh * c.c
		ref := want[off : off+n]
		off += n
		diff, worst := 0, 0
		for j := range got {
			if d := int(got[j]) - int(ref[j]); d != 0 {
				diff++
				worst = max(worst, d, -d)
			}
		}
		if diff != 0 {
			t.Errorf("resize %+v: %d of %d bytes differ from Pillow, worst %d", c, diff, n, worst)
		}
		g := planes[i].gray().pix
		refL := want[off : off+c.w*c.h]
		off += c.w * c.h
		if !bytes.Equal(g, refL) {
			t.Errorf("gray %+v differs from Pillow convert('L')", c)
		}
	}
}

const pilPipelineScript = `
import sys
import numpy as np
from PIL import Image
path, load, crop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
AB = Image.open(path).convert('RGB')
w, h = AB.size
w2 = int(w / 2)
A, B = AB.crop((0, 0, w2, h)), AB.crop((w2, 0, w, h))
def tf(img, gray):
    if gray:
        img = img.convert('L')
    img = img.resize((load, load), Image.BICUBIC)
    o = (load - crop) // 2
    img = img.crop((o, o, o + crop, o + crop))
    a = np.asarray(img).astype(np.float32)
    if a.ndim == 2:
        a = a[None]
    else:
        a = a.transpose(2, 0, 1)
    return ((a / np.float32(255) - np.float32(0.5)) / np.float32(0.5)).astype('<f4').tobytes()
sys.stdout.buffer.write(tf(A, True) + tf(B, False))
`

// The whole aligned pipeline (convert, split, Grayscale, Resize BICUBIC, crop, ToTensor,
// Normalize) against Pillow and numpy float32: bit-identical.
func TestAlignedPipelineMatchesPillow(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(21, 1))
	path := filepath.Join(root, "test", "1.png")
	writePNGFile(t, path, pairImage(randomRGB(rng, 30, 30), randomRGB(rng, 30, 30)))
	cfg := Config{Root: root, Layout: Aligned, Phase: "test", InputNC: 1, OutputNC: 3,
		Preprocess: ResizeAndCrop, LoadSize: 37, CropSize: 32}
	s := mustLoad(t, mustOpen(t, cfg), 0, 0, 0)
	raw := runPIL(t, pilPipelineScript, path, "37", "32")
	want := make([]float32, len(raw)/4)
	for i := range want {
		want[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	got := append(slices.Clone(s.A), s.B...)
	if len(got) != len(want) {
		t.Fatalf("%d values, Pillow gives %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("value %d: %v, Pillow+numpy %v", i, got[i], want[i])
		}
	}
}
