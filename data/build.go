package data

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
)

// Dataset builder names.
const (
	Edges2ShoesMini = "edges2shoes-mini" // aligned: A = edge map, B = shoe photo
	Sneaker2Boot    = "sneaker2boot"     // unaligned: A = sneakers, B = ankle boots
)

// Fashion-MNIST classes used by the builders.
const (
	classSandal    = 5
	classSneaker   = 7
	classAnkleBoot = 9
)

// MarkerFile sits in a finished dataset folder and records the flags that built it.
const MarkerFile = ".wkd-dataset.json"

// ContactSheetFile is the preview the builder writes into the dataset folder.
const ContactSheetFile = "contact_sheet.png"

// BuildConfig describes a dataset built from Fashion-MNIST.
type BuildConfig struct {
	// Name is Edges2ShoesMini or Sneaker2Boot.
	Name string `json:"name"`
	// Source is the folder with train-images-idx3-ubyte(.gz) and the others (not compared for
	// idempotence: the same files may live in another folder).
	Source string `json:"-"`
	// Out is the parent folder; the dataset goes to Out/Name.
	Out string `json:"-"`
	// Size is the side of each image (A and B are Size x Size) in pixels; the 28x28 items are
	// resized with the PIL-exact bicubic filter.
	Size int `json:"size"`
	// Channels is 1 (grayscale PNGs) or 3 (RGB PNGs, gray replicated).
	Channels int `json:"channels"`
	// Train, Val, Test are the image counts per split (per domain for Sneaker2Boot). Train and
	// Val come from Fashion-MNIST's training set, Test from its test set, so they never overlap.
	Train int `json:"train"`
	Val   int `json:"val"`
	Test  int `json:"test"`
	// Edges tune the edge detector of Edges2ShoesMini.
	Edges EdgeParams `json:"edges"`
	// Force replaces an existing dataset folder built with other flags.
	Force bool `json:"-"`
	// Progress, when not nil, is called after each written image from the builder's goroutine.
	Progress func(split string, done, total int) `json:"-"`
}

// DefaultBuildConfig is a dataset a demo trains on in minutes.
func DefaultBuildConfig(name, source, out string) BuildConfig {
	return BuildConfig{Name: name, Source: source, Out: out, Size: 32, Channels: 3,
		Train: 2000, Val: 200, Test: 200, Edges: DefaultEdgeParams()}
}

// Validate reports the first bad field, named as its flag of `wkd data`.
func (c BuildConfig) Validate() error {
	switch {
	case c.Name != Edges2ShoesMini && c.Name != Sneaker2Boot:
		return fmt.Errorf("%w: --name %q, want %s or %s", ErrBadConfig, c.Name, Edges2ShoesMini, Sneaker2Boot)
	case c.Source == "":
		return fmt.Errorf("%w: --source is empty", ErrBadConfig)
	case c.Out == "":
		return fmt.Errorf("%w: --out is empty", ErrBadConfig)
	case c.Size < 8 || c.Size > 1024:
		return fmt.Errorf("%w: --size %d, want 8..1024", ErrBadConfig, c.Size)
	case c.Channels != 1 && c.Channels != 3:
		return fmt.Errorf("%w: --channels %d, want 1 or 3", ErrBadConfig, c.Channels)
	case c.Train < 1 || c.Val < 0 || c.Test < 1:
		return fmt.Errorf("%w: --train %d, --val %d, --test %d: want train, test >= 1 and val >= 0", ErrBadConfig, c.Train, c.Val, c.Test)
	case c.Edges.Sigma < 0 || c.Edges.High <= 0 || c.Edges.High > 1 || c.Edges.Low <= 0 || c.Edges.Low > 1:
		return fmt.Errorf("%w: edge parameters %+v: want sigma >= 0 and thresholds in (0, 1]", ErrBadConfig, c.Edges)
	}
	return nil
}

// BuildResult says what Build did.
type BuildResult struct {
	Dir     string         // the dataset folder
	Counts  map[string]int // images per folder (train, val, test or trainA, ...)
	Skipped bool           // the folder already held this dataset; nothing was written
}

type marker struct {
	Version int             `json:"version"`
	Config  json.RawMessage `json:"config"`
	Counts  map[string]int  `json:"counts"`
}

const markerVersion = 1

// Build writes the dataset into a temporary folder next to Out/Name and renames it into place,
// so Out/Name is either absent, complete, or the previous dataset. Re-running with the same
// flags finds the marker and does nothing.
func Build(cfg BuildConfig) (BuildResult, error) {
	if err := cfg.Validate(); err != nil {
		return BuildResult{}, err
	}
	want := cfg.comparable()
	f := datasetFolder{out: cfg.Out, name: cfg.Name, force: cfg.Force, flags: want,
		differs: func(recorded json.RawMessage) string {
			var was BuildConfig
			if json.Unmarshal(recorded, &was) != nil {
				return "an older marker format"
			}
			if reflect.DeepEqual(was, want) {
				return ""
			}
			return flagDiff(was, want)
		}}
	return f.build(cfg.write)
}

// write renders the dataset into the folder tmp and returns the image count per folder.
func (cfg BuildConfig) write(tmp string) (map[string]int, error) {
	trainImg, trainLbl, err := readFashion(cfg.Source, "train")
	if err != nil {
		return nil, err
	}
	testImg, testLbl, err := readFashion(cfg.Source, "t10k")
	if err != nil {
		return nil, err
	}
	var jobs []writeJob
	if cfg.Name == Edges2ShoesMini {
		shoes := []int{classSandal, classSneaker, classAnkleBoot}
		tr, err := pick(trainLbl, shoes, cfg.Train+cfg.Val, "--train + --val", "training")
		if err != nil {
			return nil, err
		}
		te, err := pick(testLbl, shoes, cfg.Test, "--test", "test")
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, pairJobs(cfg, tmp, "train", trainImg, tr[:cfg.Train])...)
		jobs = append(jobs, pairJobs(cfg, tmp, "val", trainImg, tr[cfg.Train:])...)
		jobs = append(jobs, pairJobs(cfg, tmp, "test", testImg, te)...)
	} else {
		for _, d := range []struct {
			suffix string
			class  int
		}{{"A", classSneaker}, {"B", classAnkleBoot}} {
			tr, err := pick(trainLbl, []int{d.class}, cfg.Train+cfg.Val, "--train + --val", "training")
			if err != nil {
				return nil, err
			}
			te, err := pick(testLbl, []int{d.class}, cfg.Test, "--test", "test")
			if err != nil {
				return nil, err
			}
			jobs = append(jobs, photoJobs(cfg, tmp, "train"+d.suffix, trainImg, tr[:cfg.Train])...)
			jobs = append(jobs, photoJobs(cfg, tmp, "val"+d.suffix, trainImg, tr[cfg.Train:])...)
			jobs = append(jobs, photoJobs(cfg, tmp, "test"+d.suffix, testImg, te)...)
		}
	}
	counts, err := runJobs(jobs, cfg.Progress)
	if err != nil {
		return nil, err
	}
	var sheet []string
	for _, j := range jobs {
		if j.split == "train" || (j.split == "trainA" || j.split == "trainB") && countSplit(sheet, j.split) < 8 {
			sheet = append(sheet, j.path)
		}
		if len(sheet) == 16 {
			break
		}
	}
	return counts, WriteContactSheet(filepath.Join(tmp, ContactSheetFile), sheet, 4, 3)
}

// datasetFolder is what every builder shares: the dataset folder Out/Name, the marker that
// records the flags it was built with, and the temporary folder it is written into.
type datasetFolder struct {
	out, name string
	force     bool
	// flags are recorded in the marker; a re-run with equal flags finds the dataset complete.
	flags any
	// differs names the flags that differ between a marker's recorded flags and these, as
	// "--flag old (now new)", or returns "" when none do.
	differs func(recorded json.RawMessage) string
}

// build returns at once when Out/Name holds a dataset built with the same flags, refuses any
// other existing folder unless forced, and otherwise has write fill a fresh temporary folder
// beside it (returning the image count per folder), adds the marker and renames the folder into
// place, so Out/Name is either absent, complete, or the previous dataset.
func (f datasetFolder) build(write func(tmp string) (map[string]int, error)) (BuildResult, error) {
	dir := filepath.Join(f.out, f.name)
	res := BuildResult{Dir: dir}
	replace := false
	if _, err := os.Stat(dir); err == nil {
		m, ok := f.builtIn(dir)
		if ok {
			res.Skipped, res.Counts = true, m.Counts
			return res, nil
		}
		if !f.force {
			why := "it has no readable " + MarkerFile
			if m.Version != 0 {
				why = "it was built with other flags: " + f.differs(m.Config)
			}
			return res, fmt.Errorf("%w: %s: %s; delete it, choose another --out, or pass --force", ErrDatasetExists, dir, why)
		}
		replace = true
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return res, fmt.Errorf("data: create --out %s: %w", f.out, err)
	}
	tmp := filepath.Join(f.out, "."+f.name+".tmp-"+randomSuffix())
	defer os.RemoveAll(tmp) // no-op after the rename
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return res, fmt.Errorf("data: %w", err)
	}
	counts, err := write(tmp)
	if err != nil {
		return res, err
	}
	res.Counts = counts
	flags, err := json.Marshal(f.flags)
	if err != nil {
		return res, fmt.Errorf("data: %w", err)
	}
	raw, _ := json.MarshalIndent(marker{Version: markerVersion, Config: flags, Counts: res.Counts}, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, MarkerFile), raw, 0o644); err != nil {
		return res, fmt.Errorf("data: %w", err)
	}
	if replace {
		old := filepath.Join(f.out, "."+f.name+".old-"+randomSuffix())
		if err := os.Rename(dir, old); err != nil {
			return res, fmt.Errorf("data: move the old dataset aside: %w", err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if m, ok := f.builtIn(dir); ok { // a concurrent run with the same flags finished first
			res.Skipped, res.Counts = true, m.Counts
			return res, nil
		}
		return res, fmt.Errorf("data: move the new dataset into place: %w", err)
	}
	return res, nil
}

// builtIn reports whether dir holds a complete dataset built with f's flags.
func (f datasetFolder) builtIn(dir string) (marker, bool) {
	var m marker
	raw, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if err != nil || json.Unmarshal(raw, &m) != nil {
		return m, false
	}
	return m, m.Version == markerVersion && f.differs(m.Config) == ""
}

// comparable is the part of the config the marker records and compares.
func (c BuildConfig) comparable() BuildConfig {
	return BuildConfig{Name: c.Name, Size: c.Size, Channels: c.Channels, Train: c.Train, Val: c.Val, Test: c.Test, Edges: c.Edges}
}

// flagDiff lists the flags that differ between the marker's config and the requested one.
func flagDiff(was, now BuildConfig) string {
	var d flagChanges
	d.add("name", was.Name, now.Name)
	d.add("size", was.Size, now.Size)
	d.add("channels", was.Channels, now.Channels)
	d.add("train", was.Train, now.Train)
	d.add("val", was.Val, now.Val)
	d.add("test", was.Test, now.Test)
	d.addEdges(was.Edges, now.Edges)
	return d.String()
}

// flagChanges collects "--flag old (now new)" for the flags a dataset was built with that
// differ from those asked for now.
type flagChanges []string

func (d *flagChanges) add(flag string, was, now any) {
	if was != now {
		*d = append(*d, fmt.Sprintf("--%s %v (now %v)", flag, was, now))
	}
}

func (d *flagChanges) addEdges(was, now EdgeParams) {
	d.add("edge-sigma", was.Sigma, now.Sigma)
	d.add("edge-high", was.High, now.High)
	d.add("edge-low", was.Low, now.Low)
}

func (d flagChanges) String() string {
	if len(d) == 0 {
		return "an older marker format"
	}
	return strings.Join(d, ", ")
}

func countSplit(paths []string, split string) int {
	n := 0
	for _, p := range paths {
		if filepath.Base(filepath.Dir(p)) == split {
			n++
		}
	}
	return n
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readFashion reads <prefix>-images-idx3-ubyte[.gz] and the matching labels.
func readFashion(dir, prefix string) (*IDX, *IDX, error) {
	find := func(base string) string {
		p := filepath.Join(dir, base+".gz")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return filepath.Join(dir, base)
	}
	imgPath, lblPath := find(prefix+"-images-idx3-ubyte"), find(prefix+"-labels-idx1-ubyte")
	img, err := ReadIDX(imgPath)
	if err != nil {
		return nil, nil, err
	}
	lbl, err := ReadIDX(lblPath)
	if err != nil {
		return nil, nil, err
	}
	if len(img.Dims) != 3 || len(lbl.Dims) != 1 || img.Dims[0] != lbl.Dims[0] {
		return nil, nil, fmt.Errorf("%w: %s has shape %v and %s %v; want (N, H, W) images and N labels",
			ErrBadIDX, imgPath, img.Dims, lblPath, lbl.Dims)
	}
	return img, lbl, nil
}

// pick returns the first n item indices whose label is in classes, in file order.
func pick(lbl *IDX, classes []int, n int, flag, set string) ([]int, error) {
	var out []int
	for i, l := range lbl.Data {
		for _, c := range classes {
			if int(l) == c {
				out = append(out, i)
			}
		}
		if len(out) == n {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: %s asks for %d images of classes %v but the %s set has %d", ErrBadConfig, flag, n, classes, set, len(out))
}

// writeJob renders one PNG.
type writeJob struct {
	split, path string
	render      func() image.Image
}

func (c BuildConfig) item(set *IDX, i int) *plane {
	h, w := set.Dims[1], set.Dims[2]
	p := newPlane(1, h, w)
	for k, v := range set.Data[i*h*w : (i+1)*h*w] {
		p.pix[k] = 255 - v // Fashion-MNIST is light on black; a product photo is dark on white
	}
	return p.resize(c.Size, c.Size)
}

func pairJobs(c BuildConfig, root, split string, set *IDX, items []int) []writeJob {
	return makeJobs(root, split, items, func(i int) image.Image {
		photo := c.item(set, items[i])
		edges := &plane{c: 1, h: c.Size, w: c.Size, pix: EdgeMap(photo.pix, c.Size, c.Size, c.Edges)}
		return toImage(sideBySide(edges, photo), c.Channels)
	})
}

func photoJobs(c BuildConfig, root, split string, set *IDX, items []int) []writeJob {
	return makeJobs(root, split, items, func(i int) image.Image {
		return toImage(c.item(set, items[i]), c.Channels)
	})
}

func makeJobs(root, split string, items []int, render func(int) image.Image) []writeJob {
	jobs := make([]writeJob, len(items))
	for i := range items {
		jobs[i] = writeJob{split: split, path: filepath.Join(root, split, fmt.Sprintf("%05d.png", i)),
			render: func() image.Image { return render(i) }}
	}
	return jobs
}

// sideBySide joins two planes of equal height into A|B.
func sideBySide(a, b *plane) *plane {
	out := newPlane(a.c, a.h, a.w+b.w)
	for c := 0; c < a.c; c++ {
		for y := 0; y < a.h; y++ {
			row := out.pix[c*out.h*out.w+y*out.w:]
			copy(row, a.pix[c*a.h*a.w+y*a.w:][:a.w])
			copy(row[a.w:], b.pix[c*b.h*b.w+y*b.w:][:b.w])
		}
	}
	return out
}

// toImage converts a plane to a Gray (channels 1) or an RGBA (channels 3; encoded as an 8-bit
// RGB PNG since it is opaque). A one-channel plane is replicated into RGB; a three-channel
// plane needs channels 3.
func toImage(p *plane, channels int) image.Image {
	r := image.Rect(0, 0, p.w, p.h)
	if channels == 1 {
		g := image.NewGray(r)
		copy(g.Pix, p.pix[:p.w*p.h])
		return g
	}
	n := p.w * p.h
	img := image.NewRGBA(r)
	for i, v := range p.pix[:n] {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = v, v, v, 255
	}
	if p.c == 3 {
		for i := range n {
			img.Pix[4*i+1], img.Pix[4*i+2] = p.pix[n+i], p.pix[2*n+i]
		}
	}
	return img
}

// runJobs creates the jobs' folders, renders and writes the PNGs on GOMAXPROCS goroutines,
// reports progress (when not nil) in order of completion from the calling goroutine, and
// returns the image count per split.
func runJobs(jobs []writeJob, progress func(split string, done, total int)) (map[string]int, error) {
	totals := map[string]int{}
	for _, j := range jobs {
		if totals[j.split] == 0 {
			if err := os.MkdirAll(filepath.Dir(j.path), 0o755); err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
		}
		totals[j.split]++
	}
	work := make(chan writeJob)
	done := make(chan writeJob)
	errc := make(chan error, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := writePNG(j.path, j.render()); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				select {
				case done <- j:
				case <-stop:
					return
				}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, j := range jobs {
			select {
			case work <- j:
			case <-stop:
				return
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()
	counts := map[string]int{}
	var err error
	for j := range done {
		counts[j.split]++
		if progress != nil {
			progress(j.split, counts[j.split], totals[j.split])
		}
		if len(errc) > 0 {
			break
		}
	}
	close(stop)
	for range done { // wait for the workers
	}
	select {
	case err = <-errc:
	default:
	}
	return totals, err
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("data: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("data: write %s: %w", path, err)
	}
	return nil
}

// WriteContactSheet tiles the images at paths into one PNG, cols per row, each magnified
// scale times (nearest neighbour) with a 2-pixel gray gap, for eyeballing a dataset.
func WriteContactSheet(out string, paths []string, cols, scale int) error {
	if len(paths) == 0 || cols < 1 || scale < 1 {
		return fmt.Errorf("%w: contact sheet of %d images, %d columns, scale %d", ErrBadConfig, len(paths), cols, scale)
	}
	var imgs []*plane
	cw, ch := 0, 0
	for _, p := range paths {
		img, err := decodeFile(p)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
		cw, ch = max(cw, img.w*scale), max(ch, img.h*scale)
	}
	const gap = 2
	rows := (len(imgs) + cols - 1) / cols
	sheet := image.NewRGBA(image.Rect(0, 0, cols*(cw+gap)+gap, rows*(ch+gap)+gap))
	for i := range sheet.Pix {
		sheet.Pix[i] = 128
	}
	for k, img := range imgs {
		x0, y0 := gap+(k%cols)*(cw+gap), gap+(k/cols)*(ch+gap)
		n := img.h * img.w
		for y := 0; y < img.h*scale; y++ {
			for x := 0; x < img.w*scale; x++ {
				i := (y/scale)*img.w + x/scale
				o := sheet.PixOffset(x0+x, y0+y)
				sheet.Pix[o], sheet.Pix[o+1], sheet.Pix[o+2], sheet.Pix[o+3] = img.pix[i], img.pix[n+i], img.pix[2*n+i], 255
			}
		}
	}
	return writePNG(out, sheet)
}
