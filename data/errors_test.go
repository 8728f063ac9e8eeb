package data

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// expectErr checks the sentinel and that the message names the file.
func expectErr(t *testing.T, err, want error, file string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), file) {
		t.Fatalf("error %q does not name %s", err, file)
	}
}

// loadFirst opens an aligned dataset and loads sample 0.
func loadFirst(root string) error {
	d, err := Open(testCfg(root, Aligned))
	if err != nil {
		return err
	}
	_, err = d.Load(0, 0, 0)
	return err
}

func goodPNG(t *testing.T) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, pairImage(randomRGB(rand.New(rand.NewPCG(1, 2)), 8, 8), randomRGB(rand.New(rand.NewPCG(1, 3)), 8, 8))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeRaw(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestErrCorruptPNG(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "train", "bad.png")
	writeRaw(t, p, []byte("this is not a PNG at all"))
	expectErr(t, loadFirst(root), ErrCorruptImage, p)
}

// A PNG cut short: the header is intact (Open succeeds), the pixel data is not.
func TestErrTruncatedPNG(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "train", "cut.png")
	b := goodPNG(t)
	writeRaw(t, p, b[:len(b)*2/3])
	expectErr(t, loadFirst(root), ErrCorruptImage, p)
}

func TestErrTruncatedJPEG(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "train", "cut.jpg")
	writeJPEGFile(t, p, pairImage(randomRGB(rand.New(rand.NewPCG(2, 2)), 16, 16), randomRGB(rand.New(rand.NewPCG(2, 3)), 16, 16)))
	b, _ := os.ReadFile(p)
	writeRaw(t, p, b[:len(b)/2])
	expectErr(t, loadFirst(root), ErrCorruptImage, p)
}

func TestErrCorruptJPEG(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "train", "bad.jpg")
	writeRaw(t, p, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 4, 'J', 'F', 0xff, 0xd9})
	expectErr(t, loadFirst(root), ErrCorruptImage, p)
}

// An aligned image must be two square halves.
func TestErrAlignedWrongSize(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "train", "square.png")
	writePNGFile(t, p, randomRGB(rand.New(rand.NewPCG(3, 2)), 8, 8))
	expectErr(t, loadFirst(root), ErrBadSize, p)
}

// The first file is fine, a later one is not: the size check runs per sample too.
func TestErrAlignedWrongSizeLaterFile(t *testing.T) {
	root := t.TempDir()
	writeRaw(t, filepath.Join(root, "train", "a.png"), goodPNG(t))
	p := filepath.Join(root, "train", "b.png")
	writePNGFile(t, p, randomRGB(rand.New(rand.NewPCG(3, 3)), 10, 8))
	d, err := Open(testCfg(root, Aligned))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Load(0, 0, 1)
	expectErr(t, err, ErrBadSize, p)
}

// Without a resize, images of different sizes cannot share a batch.
func TestErrSizeMismatchWithoutResize(t *testing.T) {
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(4, 2))
	writePNGFile(t, filepath.Join(root, "trainA", "a.png"), randomRGB(rng, 8, 8))
	p := filepath.Join(root, "trainA", "b.png")
	writePNGFile(t, p, randomRGB(rng, 12, 12))
	writePNGFile(t, filepath.Join(root, "trainB", "a.png"), randomRGB(rng, 8, 8))
	d, err := Open(testCfg(root, Unaligned))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(0, 0, 0); err != nil {
		t.Fatal(err)
	}
	_, err = d.Load(0, 0, 1)
	expectErr(t, err, ErrSizeMismatch, p)
	// with a resize the same files are fine
	cfg := testCfg(root, Unaligned)
	cfg.Preprocess, cfg.LoadSize, cfg.CropSize = ResizeAndCrop, 8, 8
	if _, err := mustOpen(t, cfg).Load(0, 0, 1); err != nil {
		t.Fatalf("resized: %v", err)
	}
}

func TestErrEmptyFolder(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "train")
	writeRaw(t, filepath.Join(dir, "notes.txt"), []byte("no images here"))
	_, err := Open(testCfg(root, Aligned))
	expectErr(t, err, ErrEmptyFolder, dir)
}

func TestErrMissingFolder(t *testing.T) {
	root := t.TempDir()
	writeRaw(t, filepath.Join(root, "trainA", "a.png"), goodPNG(t))
	_, err := Open(testCfg(root, Unaligned)) // trainB is missing
	expectErr(t, err, ErrMissingFolder, filepath.Join(root, "trainB"))
}

func TestErrIDXUnreadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing-idx3-ubyte.gz")
	_, err := ReadIDX(p)
	expectErr(t, err, ErrIDXUnreadable, p)
}

func TestErrIDXBadMagic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x-idx3-ubyte")
	writeRaw(t, p, []byte{0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7})
	_, err := ReadIDX(p)
	expectErr(t, err, ErrBadIDX, p)
}

func TestErrIDXWrongElementType(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x-idx1-float")
	writeRaw(t, p, []byte{0, 0, 0x0d, 0x01, 0, 0, 0, 1, 0, 0, 0, 0})
	_, err := ReadIDX(p)
	expectErr(t, err, ErrBadIDX, p)
}

func TestErrIDXTruncatedData(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x-idx3-ubyte")
	writeRaw(t, p, []byte{0, 0, 0x08, 0x03, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3}) // 8 claimed, 3 present
	_, err := ReadIDX(p)
	expectErr(t, err, ErrBadIDX, p)
}

func TestErrIDXTruncatedGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(append([]byte{0, 0, 0x08, 0x01, 0, 0, 0x10, 0}, bytes.Repeat([]byte{9}, 4096)...))
	zw.Close()
	p := filepath.Join(t.TempDir(), "x-idx1-ubyte.gz")
	writeRaw(t, p, buf.Bytes()[:buf.Len()/2])
	_, err := ReadIDX(p)
	expectErr(t, err, ErrBadIDX, p)
}

// TestCheckHeadersFindsEveryBadFile: before training, every file's header is read: files deep
// in the list that are not images, or not A|B pairs, are each named; the progress reaches the
// total.
func TestCheckHeadersFindsEveryBadFile(t *testing.T) {
	root := t.TempDir()
	good := goodPNG(t)
	for i := range 30 {
		writeRaw(t, filepath.Join(root, "train", fmt.Sprintf("%02d.png", i)), good)
	}
	garbage := filepath.Join(root, "train", "17.png")
	writeRaw(t, garbage, []byte("not an image"))
	wide := filepath.Join(root, "train", "25.png")
	writePNGFile(t, wide, randomRGB(rand.New(rand.NewPCG(3, 3)), 10, 8))
	d, err := Open(testCfg(root, Aligned))
	if err != nil {
		t.Fatal(err)
	}
	var calls, last, total int
	err = d.CheckHeaders(func(done, n int) { calls, last, total = calls+1, max(last, done), n })
	expectErr(t, err, ErrCorruptImage, garbage)
	expectErr(t, err, ErrBadSize, wide)
	if !strings.Contains(err.Error(), "2 of 30 images") || calls != 30 || last != 30 || total != 30 {
		t.Errorf("error %q, progress %d calls up to %d/%d; want 2 of 30 named and 30 calls up to 30/30", err, calls, last, total)
	}
	// An unaligned dataset: both folders are read; nothing wrong, no error.
	root = t.TempDir()
	for _, side := range []string{"A", "B"} {
		for i := range 3 {
			writePNGFile(t, filepath.Join(root, "train"+side, fmt.Sprintf("%d.png", i)), randomRGB(rand.New(rand.NewPCG(1, uint64(i))), 8, 8))
		}
	}
	d, err = Open(testCfg(root, Unaligned))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := d.CheckHeaders(func(done, _ int) { n = max(n, done) }); err != nil || n != 6 {
		t.Errorf("unaligned: %v after %d files, want nil after 6", err, n)
	}
}
