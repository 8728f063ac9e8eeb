package data

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testCfg is an evaluation setup with no resize, so pixels can be checked one by one.
func testCfg(root string, layout Layout) Config {
	return Config{Root: root, Layout: layout, Phase: "train", InputNC: 3, OutputNC: 3,
		Preprocess: PreprocessNone, NoFlip: true}
}

func TestAlignedSplitsAAndBAndNormalises(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	a, b := randomRGB(rng, 8, 8), randomRGB(rng, 8, 8)
	a.Pix[0], b.Pix[0] = 0, 255 // the ends of the range
	writePNGFile(t, filepath.Join(root, "train", "1.png"), pairImage(a, b))
	d := mustOpen(t, testCfg(root, Aligned))
	s := mustLoad(t, d, 0, 0, 0)
	if s.AShape != [3]int{3, 8, 8} || s.BShape != [3]int{3, 8, 8} {
		t.Fatalf("shapes %v %v", s.AShape, s.BShape)
	}
	for c := 0; c < 3; c++ {
		for y := 0; y < 8; y++ {
			for x := 0; x < 8; x++ {
				i := c*64 + y*8 + x
				if s.A[i] != norm(channelAt(a, x, y, c)) || s.B[i] != norm(channelAt(b, x, y, c)) {
					t.Fatalf("c%d (%d,%d): A %v B %v, want %v %v", c, x, y, s.A[i], s.B[i],
						norm(channelAt(a, x, y, c)), norm(channelAt(b, x, y, c)))
				}
			}
		}
	}
	if s.A[0] != -1 || s.B[0] != 1 {
		t.Fatalf("0 -> %v, 255 -> %v, want -1 and 1", s.A[0], s.B[0])
	}
}

func TestBtoASwapsSidesAndChannels(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(2, 1))
	a, b := randomRGB(rng, 8, 8), randomRGB(rng, 8, 8)
	writePNGFile(t, filepath.Join(root, "train", "1.png"), pairImage(a, b))
	cfg := testCfg(root, Aligned)
	cfg.BtoA, cfg.InputNC, cfg.OutputNC = true, 1, 3 // the generator reads B, in gray
	s := mustLoad(t, mustOpen(t, cfg), 0, 0, 0)
	if s.AShape[0] != 1 || s.BShape[0] != 3 {
		t.Fatalf("BtoA shapes %v %v, want A gray and B RGB", s.AShape, s.BShape)
	}
	if s.A[9] != norm(luma(b.RGBAAt(1, 1))) || s.B[9] != norm(a.Pix[a.PixOffset(1, 1)]) {
		t.Fatalf("BtoA: A %v B %v, want B's luma %v and A's red %v", s.A[9], s.B[9], norm(luma(b.RGBAAt(1, 1))), norm(a.Pix[a.PixOffset(1, 1)]))
	}
}

func TestGrayscaleConversions(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 1))
	rgb := randomRGB(rng, 8, 8)
	gray := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(rng.IntN(256))
	}
	writePNGFile(t, filepath.Join(root, "trainA", "rgb.png"), rgb)
	writePNGFile(t, filepath.Join(root, "trainB", "gray.png"), gray)
	cfg := testCfg(root, Unaligned)
	cfg.InputNC, cfg.OutputNC = 1, 3 // RGB -> gray by luma; gray -> RGB by replication
	s := mustLoad(t, mustOpen(t, cfg), 0, 0, 0)
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			if got, want := s.A[y*8+x], norm(luma(rgb.RGBAAt(x, y))); got != want {
				t.Fatalf("luma (%d,%d) = %v, want %v", x, y, got, want)
			}
			for c := 0; c < 3; c++ {
				if got, want := s.B[c*64+y*8+x], norm(gray.GrayAt(x, y).Y); got != want {
					t.Fatalf("replicated gray c%d (%d,%d) = %v, want %v", c, x, y, got, want)
				}
			}
		}
	}
}

func TestJPEGLoads(t *testing.T) {
	root := t.TempDir()
	img := image.NewRGBA(image.Rect(0, 0, 16, 8))
	for y := 0; y < 8; y++ {
		for x := 0; x < 16; x++ {
			img.SetRGBA(x, y, color.RGBA{uint8(x * 16), uint8(x * 16), uint8(x * 16), 255}) // gray: no chroma subsampling loss
		}
	}
	writeJPEGFile(t, filepath.Join(root, "train", "1.jpg"), img)
	s := mustLoad(t, mustOpen(t, testCfg(root, Aligned)), 0, 0, 0)
	worst := 0.0
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			worst = math.Max(worst, math.Abs(float64(s.B[y*8+x]-norm(uint8((x+8)*16)))))
		}
	}
	if worst > 0.04 { // lossy, but a smooth ramp at quality 100 stays within a few levels
		t.Fatalf("JPEG red channel of B off by %v (in [-1, 1] units)", worst)
	}
}

// Training: A and B of a pair share crop and flip; the choices vary and depend only on
// (seed, epoch, index).
func TestAlignedTrainSharesCropAndFlip(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(4, 1))
	a := randomRGB(rng, 16, 16)
	writePNGFile(t, filepath.Join(root, "train", "1.png"), pairImage(a, a))
	cfg := testCfg(root, Aligned)
	cfg.Preprocess, cfg.LoadSize, cfg.CropSize, cfg.NoFlip, cfg.Train = ResizeAndCrop, 20, 12, false, true
	d := mustOpen(t, cfg)
	seen := map[string]bool{}
	for epoch := 0; epoch < 40; epoch++ {
		s := mustLoad(t, d, 7, epoch, 0)
		if s.AShape != [3]int{3, 12, 12} || !slices.Equal(s.A, s.B) {
			t.Fatalf("epoch %d: A and B differ (shape %v): crop or flip not shared", epoch, s.AShape)
		}
		if again := mustLoad(t, d, 7, epoch, 0); !slices.Equal(again.A, s.A) {
			t.Fatalf("epoch %d: two loads of the same (seed, epoch, index) differ", epoch)
		}
		seen[fmt.Sprint(s.A[:8])] = true
	}
	if len(seen) < 20 {
		t.Fatalf("only %d distinct crops/flips in 40 epochs", len(seen))
	}
}

func TestFlipMirrorsAndNoFlipDoesNot(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 1))
	a := randomRGB(rng, 8, 8)
	writePNGFile(t, filepath.Join(root, "train", "1.png"), pairImage(a, a))
	cfg := testCfg(root, Aligned)
	cfg.Train, cfg.NoFlip = true, false
	d := mustOpen(t, cfg)
	ref := mustLoad(t, mustOpen(t, testCfg(root, Aligned)), 0, 0, 0).A
	mirrored := slices.Clone(ref)
	for row := 0; row < 24; row++ {
		slices.Reverse(mirrored[row*8 : row*8+8])
	}
	flips := 0
	for epoch := 0; epoch < 200; epoch++ {
		s := mustLoad(t, d, 1, epoch, 0)
		switch {
		case slices.Equal(s.A, mirrored):
			flips++
		case !slices.Equal(s.A, ref):
			t.Fatalf("epoch %d: neither the image nor its mirror", epoch)
		}
	}
	if flips < 70 || flips > 130 {
		t.Fatalf("%d flips in 200 epochs, want about 100", flips)
	}
	cfg.NoFlip = true
	d = mustOpen(t, cfg)
	for epoch := 0; epoch < 20; epoch++ {
		if !slices.Equal(mustLoad(t, d, 1, epoch, 0).A, ref) {
			t.Fatal("--no_flip still flipped")
		}
	}
}

// Test time: no randomness at all: the centre crop, no flip, whatever the seed.
func TestTestModeIsCentreCropNoFlip(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(6, 1))
	a := randomRGB(rng, 10, 10)
	writePNGFile(t, filepath.Join(root, "test", "1.png"), pairImage(a, a))
	cfg := testCfg(root, Aligned)
	cfg.Phase, cfg.Preprocess, cfg.CropSize, cfg.NoFlip = "test", Crop, 6, false
	d := mustOpen(t, cfg)
	s := mustLoad(t, d, 1, 0, 0)
	for y := 0; y < 6; y++ {
		for x := 0; x < 6; x++ {
			if s.A[y*6+x] != norm(channelAt(a, x+2, y+2, 0)) {
				t.Fatalf("(%d,%d): not the centre crop", x, y)
			}
		}
	}
	for seed := uint64(2); seed < 10; seed++ {
		if !slices.Equal(mustLoad(t, d, seed, int(seed), 0).A, s.A) {
			t.Fatalf("seed %d changed a test-mode sample", seed)
		}
	}
}

func TestPreprocessShapes(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 1))
	writePNGFile(t, filepath.Join(root, "trainA", "1.png"), randomRGB(rng, 30, 18))
	writePNGFile(t, filepath.Join(root, "trainB", "1.png"), randomRGB(rng, 30, 18))
	cases := []struct {
		p          Preprocess
		load, crop int
		want       [3]int
	}{
		{ResizeAndCrop, 24, 16, [3]int{3, 16, 16}},
		{Crop, 0, 16, [3]int{3, 16, 16}},
		{Crop, 0, 20, [3]int{3, 20, 20}}, // taller than the image: PIL pads with black
		{ScaleWidth, 20, 8, [3]int{3, 12, 20}},
		{ScaleWidth, 20, 16, [3]int{3, 16, 20}}, // height at least the crop size
		{ScaleWidthAndCrop, 40, 16, [3]int{3, 16, 16}},
		{PreprocessNone, 0, 0, [3]int{3, 16, 32}}, // 30 -> 32 and 18 -> 16 (4.5 rounds to even)
	}
	for _, c := range cases {
		cfg := testCfg(root, Unaligned)
		cfg.Preprocess, cfg.LoadSize, cfg.CropSize, cfg.Train = c.p, c.load, c.crop, true
		d := mustOpen(t, cfg)
		s := mustLoad(t, d, 3, 0, 0)
		if s.AShape != c.want || len(s.A) != c.want[0]*c.want[1]*c.want[2] {
			t.Errorf("%s load %d crop %d: shape %v, want %v", c.p, c.load, c.crop, s.AShape, c.want)
		}
		if c.p == Crop && c.crop == 20 {
			black := 0
			for _, v := range s.A {
				if v == -1 {
					black++
				}
			}
			if black < 3*2*20 {
				t.Errorf("crop beyond the image: %d black values, want the padded rows", black)
			}
		}
	}
}

// Unaligned training: A in order (index % len(A)), B drawn at random but reproducibly.
func TestUnalignedOrderAndRandomB(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(8, 1))
	for i := 0; i < 3; i++ {
		writePNGFile(t, filepath.Join(root, "trainA", fmt.Sprintf("a%d.png", i)), randomRGB(rng, 4, 4))
	}
	for i := 0; i < 5; i++ {
		writePNGFile(t, filepath.Join(root, "trainB", fmt.Sprintf("b%d.png", i)), randomRGB(rng, 4, 4))
	}
	cfg := testCfg(root, Unaligned)
	cfg.Train = true
	d := mustOpen(t, cfg)
	if d.Len() != 5 {
		t.Fatalf("Len %d, want max(3, 5)", d.Len())
	}
	as, bs := d.Paths()
	bCount := map[string]int{}
	for epoch := 0; epoch < 30; epoch++ {
		for i := 0; i < 5; i++ {
			s := mustLoad(t, d, 11, epoch, i)
			if s.APath != as[i%3] {
				t.Fatalf("index %d: A is %s, want %s", i, s.APath, as[i%3])
			}
			if again := mustLoad(t, d, 11, epoch, i); again.BPath != s.BPath {
				t.Fatal("B is not reproducible")
			}
			bCount[s.BPath]++
		}
	}
	if len(bCount) != 5 {
		t.Fatalf("random B used %d of 5 images", len(bCount))
	}
	cfg.BtoA = true // the roles swap: the in-order folder A is now the target
	d = mustOpen(t, cfg)
	for i := 0; i < 5; i++ {
		if s := mustLoad(t, d, 11, 0, i); s.BPath != as[i%3] || filepath.Base(filepath.Dir(s.APath)) != "trainB" {
			t.Fatalf("BtoA, index %d: A %s B %s", i, s.APath, s.BPath)
		}
	}
	cfg.BtoA, cfg.Train = false, false // test time: serial B
	d = mustOpen(t, cfg)
	for i := 0; i < 7; i++ {
		if s := mustLoad(t, d, 11, 0, i); s.BPath != bs[i%5] {
			t.Fatalf("test mode, index %d: B %s, want %s", i, s.BPath, bs[i%5])
		}
	}
}

func TestConfigValidateNamesFlag(t *testing.T) {
	good := DefaultCycleGANConfig("x")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for flag, mut := range map[string]func(*Config){
		"--input_nc":     func(c *Config) { c.InputNC = 2 },
		"--preprocess":   func(c *Config) { c.Preprocess = "zoom" },
		"--load_size":    func(c *Config) { c.LoadSize = 0 },
		"--dataset_mode": func(c *Config) { c.Layout = "paired" },
		"--phase":        func(c *Config) { c.Phase = "../x" },
	} {
		c := good
		mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: %v", flag, err)
		}
	}
}
