package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	_ "image/png"  // registers the PNG decoder for image.Decode
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrImageFolder is returned (wrapped) for a folder that is not a usable ImageFolder.
var ErrImageFolder = errors.New("metrics: not an ImageFolder")

// ImageFolder is a classification dataset laid out as torchvision's ImageFolder expects, one
// folder per split and per class: Root/train/<class>/*.png and Root/test/<class>/*.png (PNG or
// JPEG; other files and hidden entries are ignored). Classes are the train split's folders in
// sorted order; a class's index is its label.
type ImageFolder struct {
	Root string
	// Name is the dataset's name: Root's last element (texture-classes).
	Name    string
	Classes []string
}

// OpenImageFolder lists the classes of root's train split.
func OpenImageFolder(root string) (*ImageFolder, error) {
	classes, err := subfolders(filepath.Join(root, "train"))
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w: want train/<class>/*.png and test/<class>/*.png (%v)", root, ErrImageFolder, err)
	}
	if len(classes) < 2 {
		return nil, fmt.Errorf("--data %s: %w: %d class folders in train/, a classifier needs at least 2", root, ErrImageFolder, len(classes))
	}
	return &ImageFolder{Root: root, Name: filepath.Base(filepath.Clean(root)), Classes: classes}, nil
}

func subfolders(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

func isImageFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// Files lists a split's images and their labels, sorted by class then file name. Every class
// of the train split must have images in the split, and the split no class the train split
// lacks: a test split without a class would report an accuracy over fewer classes than the
// network tells apart, and the report would not show it.
func (f *ImageFolder) Files(split string) ([]string, []int, error) {
	dir := filepath.Join(f.Root, split)
	present, err := subfolders(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--data %s: %w: %v", f.Root, ErrImageFolder, err)
	}
	label := map[string]int{}
	for i, c := range f.Classes {
		label[c] = i
	}
	have := map[string]bool{}
	for _, c := range present {
		have[c] = true
	}
	for _, c := range f.Classes {
		if !have[c] {
			return nil, nil, fmt.Errorf("--data %s: %w: %s/ lacks class %s, which train/ has: add %s/%s/*.png, or remove the class from train/ too", f.Root, ErrImageFolder, split, c, split, c)
		}
	}
	var paths []string
	var labels []int
	for _, c := range present {
		y, ok := label[c]
		if !ok {
			return nil, nil, fmt.Errorf("--data %s: %w: %s/%s is a class the train split lacks (classes: %s)", f.Root, ErrImageFolder, split, c, strings.Join(f.Classes, ", "))
		}
		entries, err := os.ReadDir(filepath.Join(dir, c))
		if err != nil {
			return nil, nil, fmt.Errorf("--data %s: %w", f.Root, err)
		}
		before := len(paths)
		for _, e := range entries {
			if !e.IsDir() && isImageFile(e.Name()) {
				paths = append(paths, filepath.Join(dir, c, e.Name()))
				labels = append(labels, y)
			}
		}
		if len(paths) == before {
			return nil, nil, fmt.Errorf("--data %s: %w: %s/%s holds no .png or .jpg images", f.Root, ErrImageFolder, split, c)
		}
	}
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("--data %s: %w: %s/ holds no images", f.Root, ErrImageFolder, split)
	}
	return paths, labels, nil
}

// load reads a split as the input of a network of spec: limit > 0 keeps a random subset of that
// many images (drawn with seed), 0 keeps them all.
func (f *ImageFolder) load(split string, spec FeatureSpec, limit int, seed uint64) (labelled, error) {
	paths, labels, err := f.Files(split)
	if err != nil {
		return labelled{}, err
	}
	if limit > 0 && limit < len(paths) {
		perm := rand.New(rand.NewPCG(seed, 7)).Perm(len(paths))[:limit]
		sort.Ints(perm)
		var p []string
		var l []int
		for _, i := range perm {
			p, l = append(p, paths[i]), append(l, labels[i])
		}
		paths, labels = p, l
	}
	c, s := spec.Channels, spec.Size
	px := c * s * s
	set := labelled{x: make([]float32, len(paths)*px), y: labels, px: px}
	for i, p := range paths {
		im, err := ReadImage(p)
		if err != nil {
			return labelled{}, fmt.Errorf("--data %s: %w", f.Root, err)
		}
		inputOf(set.x[i*px:(i+1)*px], im, c, s)
	}
	return set, nil
}

// ReadImage decodes a PNG or JPEG (sniffed from its content) as RGB in [-1, 1]: gray is
// replicated, alpha dropped.
func ReadImage(path string) (Image, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Image{}, err
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return Image{}, fmt.Errorf("%s: %v (re-export or delete the file)", path, err)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w == 0 || h == 0 {
		return Image{}, fmt.Errorf("%s: empty image", path)
	}
	im := Image{C: 3, H: h, W: w, Pix: make([]float32, 3*h*w)}
	n := h * w
	for y := range h {
		for x := range w {
			c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			i := y*w + x
			im.Pix[i] = float32(c.R)/127.5 - 1
			im.Pix[n+i] = float32(c.G)/127.5 - 1
			im.Pix[2*n+i] = float32(c.B)/127.5 - 1
		}
	}
	return im, nil
}
