package data

import (
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeFashion writes a tiny Fashion-MNIST: n items per class 0..9 in train and in t10k, each a
// bright blob on black like the real data.
func fakeFashion(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for _, set := range []string{"train", "t10k"} {
		var imgs, lbls []uint8
		for i := 0; i < 10*n; i++ {
			lbls = append(lbls, uint8(i%10))
			img := make([]uint8, 28*28)
			for y := 6; y < 22; y++ {
				for x := 4 + i%5; x < 24; x++ {
					img[y*28+x] = uint8(120 + 10*(i%10))
				}
			}
			imgs = append(imgs, img...)
		}
		encodeIDX(t, filepath.Join(dir, set+"-images-idx3-ubyte.gz"), []int{10 * n, 28, 28}, imgs, true)
		encodeIDX(t, filepath.Join(dir, set+"-labels-idx1-ubyte"), []int{10 * n}, lbls, false) // raw works too
	}
	return dir
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestBuildEdges2ShoesLoadsAsAligned(t *testing.T) {
	src, out := fakeFashion(t, 10), t.TempDir()
	cfg := DefaultBuildConfig(Edges2ShoesMini, src, out)
	cfg.Size, cfg.Channels, cfg.Train, cfg.Val, cfg.Test = 16, 1, 20, 5, 4
	progress := 0
	cfg.Progress = func(string, int, int) { progress++ }
	res, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Counts["train"] != 20 || res.Counts["val"] != 5 || res.Counts["test"] != 4 || progress != 29 {
		t.Fatalf("result %+v, %d progress calls", res, progress)
	}
	img := decodePNG(t, filepath.Join(res.Dir, "train", "00000.png"))
	if _, ok := img.(*image.Gray); !ok || img.Bounds().Dx() != 32 || img.Bounds().Dy() != 16 {
		t.Fatalf("train/00000.png: %T %v, want a 32x16 gray A|B", img, img.Bounds())
	}
	g := img.(*image.Gray)
	if g.GrayAt(0, 0).Y != 255 || g.GrayAt(16, 0).Y != 255 || g.GrayAt(24, 8).Y > 160 {
		t.Fatalf("want white backgrounds and a dark item: edge %d photo %d item %d", g.GrayAt(0, 0).Y, g.GrayAt(16, 0).Y, g.GrayAt(24, 8).Y)
	}
	edgePixels := 0
	for x := 0; x < 16; x++ {
		for y := 0; y < 16; y++ {
			if g.GrayAt(x, y).Y == 0 {
				edgePixels++
			}
		}
	}
	if edgePixels < 10 || edgePixels > 100 {
		t.Fatalf("%d edge pixels in the A half, want a thin outline", edgePixels)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, ContactSheetFile)); err != nil {
		t.Fatal(err)
	}
	dcfg := DefaultPix2PixConfig(res.Dir)
	dcfg.InputNC, dcfg.OutputNC, dcfg.LoadSize, dcfg.CropSize = 1, 1, 16, 16
	d := mustOpen(t, dcfg)
	if d.Len() != 20 {
		t.Fatalf("aligned dataset of %d, want 20", d.Len())
	}
	mustLoad(t, d, 1, 0, 3)
	leftovers, _ := filepath.Glob(filepath.Join(out, ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary folders left: %v", leftovers)
	}
}

func TestBuildSneaker2BootLoadsAsUnaligned(t *testing.T) {
	src, out := fakeFashion(t, 10), t.TempDir()
	cfg := DefaultBuildConfig(Sneaker2Boot, src, out)
	cfg.Size, cfg.Train, cfg.Val, cfg.Test = 12, 6, 0, 3
	res, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"trainA": 6, "trainB": 6, "testA": 3, "testB": 3}
	for k, v := range want {
		if res.Counts[k] != v {
			t.Fatalf("counts %v, want %v", res.Counts, want)
		}
	}
	img := decodePNG(t, filepath.Join(res.Dir, "testB", "00002.png"))
	if img.Bounds().Dx() != 12 || img.ColorModel() != (&image.RGBA{}).ColorModel() {
		t.Fatalf("testB/00002.png: %v %v, want 12x12 RGB", img.Bounds(), img.ColorModel())
	}
	dcfg := DefaultCycleGANConfig(res.Dir)
	dcfg.Phase, dcfg.Train, dcfg.LoadSize, dcfg.CropSize = "test", false, 12, 12
	if d := mustOpen(t, dcfg); d.Len() != 3 {
		t.Fatalf("unaligned test set of %d", d.Len())
	}
}

// Same flags: nothing is rewritten. Other flags: refused unless forced, then replaced.
func TestBuildIsIdempotentAndGuarded(t *testing.T) {
	src, out := fakeFashion(t, 10), t.TempDir()
	cfg := DefaultBuildConfig(Sneaker2Boot, src, out)
	cfg.Size, cfg.Train, cfg.Val, cfg.Test = 8, 4, 1, 2
	res, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(res.Dir, "trainA", "00000.png")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(file, old, old); err != nil {
		t.Fatal(err)
	}
	again, err := Build(cfg)
	if err != nil || !again.Skipped || again.Counts["trainA"] != 4 {
		t.Fatalf("second run: %+v %v, want skipped", again, err)
	}
	if st, _ := os.Stat(file); !st.ModTime().Equal(old) {
		t.Fatal("second run rewrote a file")
	}
	cfg.Train = 5
	_, err = Build(cfg)
	expectErr(t, err, ErrDatasetExists, res.Dir)
	if !strings.Contains(err.Error(), "--train 4 (now 5)") {
		t.Fatalf("error %q does not say which flag changed", err)
	}
	cfg.Force = true
	if res, err = Build(cfg); err != nil || res.Skipped || res.Counts["trainA"] != 5 {
		t.Fatalf("forced: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "trainA", "00004.png")); err != nil {
		t.Fatal(err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(out, ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("folders left beside the dataset: %v", leftovers)
	}
}

// A failing build leaves nothing behind: no dataset folder, no temporary folder.
func TestBuildFailureLeavesNothing(t *testing.T) {
	src, out := fakeFashion(t, 3), t.TempDir()
	cfg := DefaultBuildConfig(Edges2ShoesMini, src, out)
	cfg.Train, cfg.Val, cfg.Test = 5, 0, 50 // the test set has only 9 shoes
	_, err := Build(cfg)
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "--test") {
		t.Fatalf("error %v, want ErrBadConfig naming --test", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
	cfg.Test, cfg.Source = 2, filepath.Join(src, "nope")
	_, err = Build(cfg)
	if !errors.Is(err, ErrIDXUnreadable) {
		t.Fatalf("missing source: %v", err)
	}
}

func TestBuildConfigValidateNamesFlag(t *testing.T) {
	for flag, mut := range map[string]func(*BuildConfig){
		"--name":     func(c *BuildConfig) { c.Name = "shoes" },
		"--size":     func(c *BuildConfig) { c.Size = 2 },
		"--channels": func(c *BuildConfig) { c.Channels = 2 },
		"--train":    func(c *BuildConfig) { c.Train = 0 },
	} {
		c := DefaultBuildConfig(Edges2ShoesMini, "src", "out")
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: %v", flag, err)
		}
	}
}

// A folder that was not written by Build (no marker) is never overwritten without --force.
func TestBuildRefusesForeignFolder(t *testing.T) {
	src, out := fakeFashion(t, 3), t.TempDir()
	dir := filepath.Join(out, Sneaker2Boot)
	writeRaw(t, filepath.Join(dir, "mine.txt"), []byte("user data"))
	cfg := DefaultBuildConfig(Sneaker2Boot, src, out)
	cfg.Train, cfg.Val, cfg.Test = 2, 0, 1
	_, err := Build(cfg)
	expectErr(t, err, ErrDatasetExists, dir)
	if _, err := os.Stat(filepath.Join(dir, "mine.txt")); err != nil {
		t.Fatalf("the folder was touched: %v", err)
	}
}
