package data

import (
	"errors"
	"fmt"
	"image"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Dataset is an opened image folder: the sorted file lists and the output shape every sample
// must have. It is safe for concurrent use; it holds no decoded pixels.
type Dataset struct {
	cfg Config
	// aPaths are the A|B files (aligned) or the files of folder A (unaligned); bPaths folder B.
	aPaths, bPaths []string
	// aShape, bShape are (C, H, W) of Sample.A and Sample.B, fixed by the first image.
	aShape, bShape [3]int
	probeA, probeB string // the files that fixed the shapes, for error messages
}

// Sample is one transformed example.
type Sample struct {
	A, B         []float32 // A: (C, H, W) generator input; B: (C, H, W) target / other domain
	AShape       [3]int    // (C, H, W) of A
	BShape       [3]int    // (C, H, W) of B
	APath, BPath string    // source files (the same file for an aligned pair)
}

// imageExts are the extensions listed; the content is sniffed when decoding.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

// Open lists the dataset's files and fixes the sample shapes from the first image(s).
// It reads image headers only; pixel errors surface when a sample is loaded.
func Open(cfg Config) (*Dataset, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dataset{cfg: cfg}
	var err error
	if cfg.Layout == Aligned {
		if d.aPaths, err = listImages(filepath.Join(cfg.Root, cfg.Phase), cfg.MaxDatasetSize); err != nil {
			return nil, err
		}
		w, h, err := headerSize(d.aPaths[0])
		if err != nil {
			return nil, err
		}
		if err := checkAB(d.aPaths[0], w, h); err != nil {
			return nil, err
		}
		left, right := cfg.OutputNC, cfg.InputNC // channels of the left and right half
		if !cfg.BtoA {
			left, right = right, left
		}
		ow, oh := cfg.outSize(w/2, h)
		d.aShape, d.bShape = [3]int{left, oh, ow}, [3]int{right, oh, ow}
		d.probeA, d.probeB = d.aPaths[0], d.aPaths[0]
	} else {
		if d.aPaths, err = listImages(filepath.Join(cfg.Root, cfg.Phase+"A"), cfg.MaxDatasetSize); err != nil {
			return nil, err
		}
		if d.bPaths, err = listImages(filepath.Join(cfg.Root, cfg.Phase+"B"), cfg.MaxDatasetSize); err != nil {
			return nil, err
		}
		aNC, bNC := cfg.InputNC, cfg.OutputNC
		if cfg.BtoA {
			aNC, bNC = bNC, aNC
		}
		for i, p := range []string{d.aPaths[0], d.bPaths[0]} {
			w, h, err := headerSize(p)
			if err != nil {
				return nil, err
			}
			ow, oh := cfg.outSize(w, h)
			if i == 0 {
				d.aShape = [3]int{aNC, oh, ow}
			} else {
				d.bShape = [3]int{bNC, oh, ow}
			}
		}
		d.probeA, d.probeB = d.aPaths[0], d.bPaths[0]
	}
	if cfg.BtoA {
		d.aShape, d.bShape = d.bShape, d.aShape
		d.probeA, d.probeB = d.probeB, d.probeA
	}
	return d, nil
}

// CheckHeaders reads the header of every image of the dataset, several files at once, so a
// file that is not an image, or not an A|B pair of an aligned dataset, is found before
// training rather than when an epoch reaches it. The error names each such file. progress,
// if not nil, is called from one goroutine at a time as files are read.
func (d *Dataset) CheckHeaders(progress func(done, total int)) error {
	paths := append(append([]string(nil), d.aPaths...), d.bPaths...)
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		bad        []error
		wg         sync.WaitGroup
	)
	for range min(8, 2*runtime.NumCPU()) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(paths); i = int(next.Add(1) - 1) {
				w, h, err := headerSize(paths[i])
				if err == nil && d.cfg.Layout == Aligned {
					err = checkAB(paths[i], w, h)
				}
				n := int(done.Add(1))
				mu.Lock()
				if err != nil {
					bad = append(bad, err)
				}
				if progress != nil {
					progress(n, len(paths))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) == 0 {
		return nil
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Error() < bad[j].Error() })
	const shown = 5
	if len(bad) > shown {
		return fmt.Errorf("%d of %d images cannot be used (fix or remove them): %w; and %d more",
			len(bad), len(paths), errors.Join(bad[:shown]...), len(bad)-shown)
	}
	return fmt.Errorf("%d of %d images cannot be used (fix or remove them): %w", len(bad), len(paths), errors.Join(bad...))
}

// Len is the number of samples in an epoch: the A|B files, or max(len(A), len(B)) as the
// reference's UnalignedDataset.
func (d *Dataset) Len() int { return max(len(d.aPaths), len(d.bPaths)) }

// Config returns the configuration the dataset was opened with.
func (d *Dataset) Config() Config { return d.cfg }

// Shapes returns (C, H, W) of Sample.A and Sample.B.
func (d *Dataset) Shapes() (a, b [3]int) { return d.aShape, d.bShape }

// Paths returns the sorted file lists: A|B files and nil (aligned), or folders A and B.
func (d *Dataset) Paths() (a, b []string) { return d.aPaths, d.bPaths }

// Load returns sample index (taken modulo Len) of the given epoch. Its random transforms
// depend only on (seed, epoch, index).
func (d *Dataset) Load(seed uint64, epoch, index int) (Sample, error) {
	s := Sample{AShape: d.aShape, BShape: d.bShape}
	s.A = make([]float32, d.aShape[0]*d.aShape[1]*d.aShape[2])
	s.B = make([]float32, d.bShape[0]*d.bShape[1]*d.bShape[2])
	var err error
	s.APath, s.BPath, err = d.loadInto(seed, epoch, index, s.A, s.B)
	return s, err
}

// loadInto decodes and transforms one sample into dstA, dstB.
// dstA: (C, H, W) of aShape; dstB: (C, H, W) of bShape.
func (d *Dataset) loadInto(seed uint64, epoch, index int, dstA, dstB []float32) (aPath, bPath string, err error) {
	if index < 0 {
		return "", "", fmt.Errorf("%w: negative sample index %d", ErrBadConfig, index)
	}
	cfg := d.cfg
	r := newSampleRand(seed, epoch, index)
	var a, b *plane
	if cfg.Layout == Aligned {
		aPath = d.aPaths[index%len(d.aPaths)]
		bPath = aPath
		ab, err := decodeFile(aPath)
		if err != nil {
			return "", "", err
		}
		if err := checkAB(aPath, ab.w, ab.h); err != nil {
			return "", "", err
		}
		w2 := ab.w / 2
		left, right := ab.crop(0, 0, w2, ab.h), ab.crop(w2, 0, ab.w-w2, ab.h)
		p := cfg.drawParams(&r, w2, ab.h)
		leftNC, rightNC := cfg.InputNC, cfg.OutputNC
		if cfg.BtoA {
			leftNC, rightNC = rightNC, leftNC
		}
		a, b = cfg.transform(left, leftNC, p), cfg.transform(right, rightNC, p)
	} else {
		aPath = d.aPaths[index%len(d.aPaths)]
		ib := index % len(d.bPaths)
		if cfg.Train && !cfg.SerialBatches {
			ib = r.intn(len(d.bPaths))
		}
		bPath = d.bPaths[ib]
		imA, err := decodeFile(aPath)
		if err != nil {
			return "", "", err
		}
		imB, err := decodeFile(bPath)
		if err != nil {
			return "", "", err
		}
		aNC, bNC := cfg.InputNC, cfg.OutputNC
		if cfg.BtoA {
			aNC, bNC = bNC, aNC
		}
		pa := cfg.drawParams(&r, imA.w, imA.h)
		pb := cfg.drawParams(&r, imB.w, imB.h)
		a, b = cfg.transform(imA, aNC, pa), cfg.transform(imB, bNC, pb)
	}
	if cfg.BtoA {
		a, b = b, a
		aPath, bPath = bPath, aPath
	}
	if err := d.checkShape(aPath, a, d.aShape, d.probeA); err != nil {
		return "", "", err
	}
	if err := d.checkShape(bPath, b, d.bShape, d.probeB); err != nil {
		return "", "", err
	}
	a.toFloat(dstA)
	b.toFloat(dstB)
	return aPath, bPath, nil
}

func (d *Dataset) checkShape(path string, p *plane, want [3]int, probe string) error {
	if p.c == want[0] && p.h == want[1] && p.w == want[2] {
		return nil
	}
	return fmt.Errorf("%w: %s gives %dx%d after --preprocess %s but %s gives %dx%d; resize the images to one size or use --preprocess resize_and_crop",
		ErrSizeMismatch, path, p.w, p.h, d.cfg.preprocess(), probe, want[2], want[1])
}

// outSize is the (W, H) of the transform's result for an input of w x h.
func (c Config) outSize(w, h int) (int, int) {
	w, h = c.resizedSize(w, h)
	if strings.Contains(string(c.preprocess()), "crop") && (w > c.CropSize || h > c.CropSize) {
		return c.CropSize, c.CropSize
	}
	return w, h
}

// checkAB requires an A|B image to be two square halves side by side.
func checkAB(path string, w, h int) error {
	if w != 2*h {
		return fmt.Errorf("%w: %s is %dx%d; an aligned image must be A|B side by side, width 2x height (e.g. 512x256)",
			ErrBadSize, path, w, h)
	}
	return nil
}

func headerSize(path string) (int, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s: %v", ErrCorruptImage, path, err)
	}
	defer f.Close()
	c, _, err := image.DecodeConfig(f)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s: %v (re-export or delete the file)", ErrCorruptImage, path, err)
	}
	return c.Width, c.Height, nil
}

// listImages returns the sorted .png/.jpg/.jpeg files under dir (recursively, as the
// reference's make_dataset), at most limit of them when limit > 0.
func listImages(dir string, limit int) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s (an aligned dataset needs <root>/<phase>/, an unaligned one <root>/<phase>A and <root>/<phase>B)",
			ErrMissingFolder, dir)
	}
	var paths []string
	others := 0
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		if imageExts[strings.ToLower(filepath.Ext(p))] {
			paths = append(paths, p)
		} else {
			others++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMissingFolder, dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: %s has no .png, .jpg or .jpeg files (%d other files)", ErrEmptyFolder, dir, others)
	}
	sort.Strings(paths)
	if limit > 0 && len(paths) > limit {
		paths = paths[:limit]
	}
	return paths, nil
}
