package data

import (
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
)

// Texture dataset names.
const (
	Sketch2Texture = "sketch2texture"  // aligned: A = layout sketch, B = texture collage
	Stone2Metal    = "stone2metal"     // unaligned: A = stone, brick, concrete; B = metal, rust, grates
	TextureClasses = "texture-classes" // ImageFolder: <split>/<material>/*.png
)

// TextureSplitsFile, in a texture dataset's folder, lists the package files each split drew from.
const TextureSplitsFile = "texture-splits.json"

// The materials of each side of stone2metal.
var (
	stoneMaterials = []Material{Concrete, Brick, Stone}
	metalMaterials = []Material{Rust, Grate, Metal}
)

// minClassGroups is how many texture groups a material needs to be a class of texture-classes:
// enough that its test crops come from groups none of its training crops come from.
const minClassGroups = 4

// TextureConfig describes a dataset cut from the textures of the openarena-081-textures package.
type TextureConfig struct {
	// Name is Sketch2Texture, Stone2Metal or TextureClasses.
	Name string
	// Deb is the package's .deb (FetchTexturePackage finds or downloads it).
	Deb string
	// Cache is the folder UnpackTextures extracts the .pk3 and the licence files into.
	Cache string
	// Out is the parent folder; the dataset goes to Out/Name.
	Out string
	// Size is the side of each image in pixels. Textures smaller than Size on either side are
	// skipped, never upscaled, so a larger Size draws on fewer textures.
	Size int
	// Train, Val, Test are the image counts per split: per domain for Stone2Metal, per class
	// for TextureClasses. Train draws on the training groups, Val and Test on the test groups.
	Train, Val, Test int
	// Seed fixes the split of the groups and every random choice: the same flags give
	// byte-identical files.
	Seed uint64
	// Edges tune the edge detector that draws Sketch2Texture's sketches.
	Edges EdgeParams
	// Force replaces an existing dataset folder built with other flags.
	Force bool
	// Progress, when not nil, is called after each written image from the builder's goroutine.
	Progress func(split string, done, total int)
	// Note, when not nil, is told of the steps that take seconds before the images are written.
	Note func(msg string)
}

// DefaultTextureEdgeParams keep the strong structure of a texture crop (joints, cracks, plate
// seams), not its grain.
func DefaultTextureEdgeParams() EdgeParams { return EdgeParams{Sigma: 1.2, High: 0.35, Low: 0.5} }

// DefaultTextureConfig is the dataset of each name at 64 pixels.
func DefaultTextureConfig(name, deb, cache, out string) TextureConfig {
	c := TextureConfig{Name: name, Deb: deb, Cache: cache, Out: out, Size: 64, Seed: 1, Edges: DefaultTextureEdgeParams()}
	switch name {
	case Sketch2Texture:
		c.Train, c.Val, c.Test = 1000, 100, 200
	case Stone2Metal:
		c.Train, c.Test = 1000, 200
	case TextureClasses:
		c.Train, c.Test = 300, 60
	}
	return c
}

// IsTextureDataset reports whether name is built by BuildTextures.
func IsTextureDataset(name string) bool {
	return name == Sketch2Texture || name == Stone2Metal || name == TextureClasses
}

// Validate reports the first bad field, named as its flag of `wkd data`.
func (c TextureConfig) Validate() error {
	switch {
	case !IsTextureDataset(c.Name):
		return fmt.Errorf("%w: --name %q, want %s, %s or %s", ErrBadConfig, c.Name, Sketch2Texture, Stone2Metal, TextureClasses)
	case c.Deb == "":
		return fmt.Errorf("%w: --textures is empty; give the %s .deb", ErrBadConfig, TexturePackage)
	case c.Cache == "":
		return fmt.Errorf("%w: --cache is empty; e.g. --cache %s", ErrBadConfig, DefaultTextureCache())
	case c.Out == "":
		return fmt.Errorf("%w: --out is empty", ErrBadConfig)
	case c.Size < 32 || c.Size > 512:
		return fmt.Errorf("%w: --size %d, want 32..512 (64 or 128 suit most textures)", ErrBadConfig, c.Size)
	case c.Train < 1 || c.Val < 0 || c.Test < 1:
		return fmt.Errorf("%w: --train %d, --val %d, --test %d: want train, test >= 1 and val >= 0", ErrBadConfig, c.Train, c.Val, c.Test)
	case c.Edges.Sigma < 0 || c.Edges.High <= 0 || c.Edges.High > 1 || c.Edges.Low <= 0 || c.Edges.Low > 1:
		return fmt.Errorf("%w: edge parameters %+v: want sigma >= 0 and thresholds in (0, 1], e.g. --edge-sigma %g --edge-high %g --edge-low %g",
			ErrBadConfig, c.Edges, DefaultTextureEdgeParams().Sigma, DefaultTextureEdgeParams().High, DefaultTextureEdgeParams().Low)
	}
	return nil
}

// textureFlags is what a texture dataset's marker records: equal flags and package version
// make the same files.
type textureFlags struct {
	Name   string     `json:"name"`
	Source string     `json:"source"` // package and version
	Size   int        `json:"size"`
	Train  int        `json:"train"`
	Val    int        `json:"val"`
	Test   int        `json:"test"`
	Seed   uint64     `json:"seed"`
	Edges  EdgeParams `json:"edges"` // Sketch2Texture only
}

func (f textureFlags) diff(now textureFlags) string {
	var d flagChanges
	d.add("textures", f.Source, now.Source)
	d.add("size", f.Size, now.Size)
	d.add("train", f.Train, now.Train)
	d.add("val", f.Val, now.Val)
	d.add("test", f.Test, now.Test)
	d.add("seed", f.Seed, now.Seed)
	d.addEdges(f.Edges, now.Edges)
	return d.String()
}

// BuildTextures builds a texture dataset into Out/Name the way Build does (temporary folder,
// marker, idempotent re-runs). It reads the .deb's control file first, so a re-run with the same
// flags and package costs milliseconds; otherwise it unpacks the package into Cache (once),
// decodes the textures, splits their groups and writes the images, the splits file, a contact
// sheet and the package's licence files.
func BuildTextures(cfg TextureConfig) (BuildResult, error) {
	if err := cfg.Validate(); err != nil {
		return BuildResult{}, err
	}
	pkg, version, err := readDebControl(cfg.Deb)
	if err != nil {
		return BuildResult{}, err
	}
	want := textureFlags{Name: cfg.Name, Source: pkg + " " + version, Size: cfg.Size,
		Train: cfg.Train, Val: cfg.Val, Test: cfg.Test, Seed: cfg.Seed}
	if cfg.Name == Sketch2Texture {
		want.Edges = cfg.Edges
	}
	f := datasetFolder{out: cfg.Out, name: cfg.Name, force: cfg.Force, flags: want,
		differs: func(recorded json.RawMessage) string {
			var was textureFlags
			if json.Unmarshal(recorded, &was) != nil {
				return "an older marker format"
			}
			if reflect.DeepEqual(was, want) {
				return ""
			}
			return was.diff(want)
		}}
	return f.build(cfg.write)
}

func (c TextureConfig) note(format string, a ...any) {
	if c.Note != nil {
		c.Note(fmt.Sprintf(format, a...))
	}
}

// texturePlan is one dataset's images, before they are rendered.
type texturePlan struct {
	jobs        []writeJob
	train, test []texturePool // what the train folders and the val and test folders draw on
	sheet       []string      // the images of the contact sheet
	sheetCols   int
}

func (c TextureConfig) write(tmp string) (map[string]int, error) {
	tf, err := UnpackTextures(c.Deb, c.Cache, c.Note)
	if err != nil {
		return nil, err
	}
	c.note("decoding the textures of %s", tf.PK3)
	ts, err := readTextures(tf.PK3, c.Size)
	if err != nil {
		return nil, err
	}
	inTest := splitGroups(ts, c.Seed)
	pools := func(materials []Material, what string) (train, test texturePool, err error) {
		train, test = newPool(ts, inTest, false, materials), newPool(ts, inTest, true, materials)
		for _, p := range []struct {
			pool  texturePool
			split string
		}{{train, "training"}, {test, "test"}} {
			if p.pool.empty() {
				return train, test, fmt.Errorf("%w: no %s textures of at least %d px in the %s groups of %s; try a smaller --size",
					ErrTooFewTextures, what, c.Size, p.split, tf.PK3)
			}
		}
		return train, test, nil
	}
	var plan texturePlan
	switch c.Name {
	case Sketch2Texture:
		train, test, err := pools(allMaterials(), "surface")
		if err != nil {
			return nil, err
		}
		plan = c.sketchPlan(tmp, train, test)
	case Stone2Metal:
		stoneTrain, stoneTest, err := pools(stoneMaterials, "stone, brick or concrete")
		if err != nil {
			return nil, err
		}
		metalTrain, metalTest, err := pools(metalMaterials, "metal, rust or grate")
		if err != nil {
			return nil, err
		}
		plan = c.stone2MetalPlan(tmp, [2]texturePool{stoneTrain, metalTrain}, [2]texturePool{stoneTest, metalTest})
	case TextureClasses:
		train, test, err := pools(allMaterials(), "surface")
		if err != nil {
			return nil, err
		}
		var classes []Material
		for _, m := range train.materials {
			if n, nt := len(train.groups[m]), len(test.groups[m]); n+nt >= minClassGroups && nt > 0 {
				classes = append(classes, m)
			}
		}
		if len(classes) < 2 {
			return nil, fmt.Errorf("%w: only %d materials have %d texture groups of at least %d px in %s; try a smaller --size",
				ErrTooFewTextures, len(classes), minClassGroups, c.Size, tf.PK3)
		}
		plan = c.classesPlan(tmp, classes, newPool(ts, inTest, false, classes), newPool(ts, inTest, true, classes))
	}
	counts, err := runJobs(plan.jobs, c.Progress)
	if err != nil {
		return nil, err
	}
	if err := writeSplits(filepath.Join(tmp, TextureSplitsFile), c, tf, plan.train, plan.test); err != nil {
		return nil, err
	}
	if err := copyLicence(tmp, tf); err != nil {
		return nil, err
	}
	return counts, WriteContactSheet(filepath.Join(tmp, ContactSheetFile), plan.sheet, plan.sheetCols, max(1, 128/c.Size))
}

// folderPools pairs each image folder with the pool it draws on: train on the training groups,
// val and test on the test groups.
func (c TextureConfig) folderPools(train, test texturePool) []struct {
	folder string
	n      int
	pool   texturePool
} {
	return []struct {
		folder string
		n      int
		pool   texturePool
	}{{"train", c.Train, train}, {"val", c.Val, test}, {"test", c.Test, test}}
}

func (c TextureConfig) sketchPlan(root string, train, test texturePool) texturePlan {
	plan := texturePlan{train: []texturePool{train}, test: []texturePool{test}, sheetCols: 4}
	for _, f := range c.folderPools(train, test) {
		plan.jobs = append(plan.jobs, c.imageJobs(root, f.folder, f.n, func(r sampleRand) *plane {
			return sideBySide(sketchPair(r, f.pool, c.Size, c.Edges))
		})...)
	}
	plan.sheet = firstPaths(plan.jobs, map[string]int{"train": 16})
	return plan
}

// stone2MetalPlan makes domain A from the stone pools and B from the metal pools.
func (c TextureConfig) stone2MetalPlan(root string, train, test [2]texturePool) texturePlan {
	plan := texturePlan{train: train[:], test: test[:], sheetCols: 8}
	for d, suffix := range []string{"A", "B"} {
		for _, f := range c.folderPools(train[d], test[d]) {
			plan.jobs = append(plan.jobs, c.imageJobs(root, f.folder+suffix, f.n, func(r sampleRand) *plane {
				return cropTexture(r, f.pool.draw(r), c.Size, c.Size)
			})...)
		}
	}
	plan.sheet = firstPaths(plan.jobs, map[string]int{"trainA": 8, "trainB": 8})
	return plan
}

// classesPlan makes one folder per material under each split, as torchvision's ImageFolder reads
// them.
func (c TextureConfig) classesPlan(root string, classes []Material, train, test texturePool) texturePlan {
	plan := texturePlan{train: []texturePool{train}, test: []texturePool{test}, sheetCols: 6}
	perSheet := map[string]int{}
	for _, m := range classes {
		for _, f := range c.folderPools(train, test) {
			plan.jobs = append(plan.jobs, c.imageJobs(root, f.folder+"/"+string(m), f.n, func(r sampleRand) *plane {
				return cropTexture(r, f.pool.drawOf(r, m), c.Size, c.Size)
			})...)
		}
		perSheet["train/"+string(m)] = 6
	}
	plan.sheet = firstPaths(plan.jobs, perSheet)
	return plan
}

func allMaterials() []Material {
	var ms []Material
	for _, mw := range materialWords {
		ms = append(ms, mw.material)
	}
	return ms
}

// imageJobs makes n RGB images in root/split, the i-th rendered from its own random stream of
// (seed, name, split, i), so the files do not depend on the order the workers run in.
func (c TextureConfig) imageJobs(root, split string, n int, render func(r sampleRand) *plane) []writeJob {
	stream := streamID(c.Name + "/" + split)
	jobs := make([]writeJob, n)
	for i := range jobs {
		jobs[i] = writeJob{split: split, path: filepath.Join(root, filepath.FromSlash(split), fmt.Sprintf("%05d.png", i)),
			render: func() image.Image { return toImage(render(newSampleRand(c.Seed, stream, i)), 3) }}
	}
	return jobs
}

// firstPaths returns, in job order, the first n[split] paths of each split named in n.
func firstPaths(jobs []writeJob, n map[string]int) []string {
	var out []string
	taken := map[string]int{}
	for _, j := range jobs {
		if taken[j.split] < n[j.split] {
			taken[j.split]++
			out = append(out, j.path)
		}
	}
	return out
}

// sketchPair renders one sketch2texture example. B is a collage: the canvas cut into 2-6
// rectangles by recursive axis-aligned splits, like the floors and bays of a facade, each filled
// with a crop of a different texture. A is its sketch: each rectangle flat in the mean colour of
// its crop, with the crop's Canny edges and the rectangles' borders drawn in black. A fixes the
// layout, colours and structure; the fine grain of B is left to the generator.
func sketchPair(r sampleRand, pool texturePool, size int, edges EdgeParams) (a, b *plane) {
	a, b = newPlane(3, size, size), newPlane(3, size, size)
	n := size * size
	var used []*texture
	for _, rect := range splitCanvas(r, size, 2+r.intn(5)) {
		x0, y0, x1, y1 := rect[0], rect[1], rect[2], rect[3]
		w, h := x1-x0, y1-y0
		t := pool.draw(r)
		for try := 0; try < 32 && slices.Contains(used, t); try++ {
			t = pool.draw(r)
		}
		used = append(used, t)
		crop := cropTexture(r, t, w, h)
		var sum [3]int
		for ch := 0; ch < 3; ch++ {
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					v := crop.pix[ch*w*h+y*w+x]
					b.pix[ch*n+(y0+y)*size+x0+x] = v
					sum[ch] += int(v)
				}
			}
		}
		lines := EdgeMap(crop.gray().pix, w, h, edges)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				border := x1 < size && x == w-1 || y1 < size && y == h-1
				for ch := 0; ch < 3; ch++ {
					v := uint8((2*sum[ch] + w*h) / (2 * w * h)) // the mean, rounded
					if border || lines[y*w+x] == 0 {
						v = 0
					}
					a.pix[ch*n+(y0+y)*size+x0+x] = v
				}
			}
		}
	}
	return a, b
}

// splitCanvas cuts a size x size canvas into k rectangles (x0, y0, x1, y1), listed in the order
// they were made: each step splits a rectangle chosen with probability proportional to its area
// across a side chosen with probability proportional to its length, at a uniform position that
// leaves both parts at least size/8 wide.
func splitCanvas(r sampleRand, size, k int) [][4]int {
	minSide := max(size/8, 4)
	rects := [][4]int{{0, 0, size, size}}
	for len(rects) < k {
		total := 0
		for _, q := range rects {
			if splittable(q, minSide) {
				total += (q[2] - q[0]) * (q[3] - q[1])
			}
		}
		if total == 0 {
			break
		}
		pick := r.intn(total)
		for i, q := range rects {
			if !splittable(q, minSide) {
				continue
			}
			if area := (q[2] - q[0]) * (q[3] - q[1]); pick >= area {
				pick -= area
				continue
			}
			w, h := q[2]-q[0], q[3]-q[1]
			canW, canH := w >= 2*minSide, h >= 2*minSide
			vertical := canW && (!canH || r.intn(w+h) < w) // a vertical cut splits the width
			if vertical {
				x := q[0] + minSide + r.intn(w-2*minSide+1)
				rects[i] = [4]int{q[0], q[1], x, q[3]}
				rects = append(rects, [4]int{x, q[1], q[2], q[3]})
			} else {
				y := q[1] + minSide + r.intn(h-2*minSide+1)
				rects[i] = [4]int{q[0], q[1], q[2], y}
				rects = append(rects, [4]int{q[0], y, q[2], q[3]})
			}
			break
		}
	}
	return rects
}

func splittable(q [4]int, minSide int) bool {
	return q[2]-q[0] >= 2*minSide || q[3]-q[1] >= 2*minSide
}

// textureSplits is the JSON of TextureSplitsFile.
type textureSplits struct {
	Source string `json:"source"` // package and version
	PK3    string `json:"pk3"`    // the archive inside the package the files are entries of
	Seed   uint64 `json:"seed"`
	// MinSide is --size: smaller textures were skipped.
	MinSide int `json:"min_side"`
	// Note says which image folders draw on which split.
	Note string `json:"note"`
	// Train and Test list the groups of near-duplicate textures on each side, sorted by name.
	Train []splitGroup `json:"train"`
	Test  []splitGroup `json:"test"`
}

type splitGroup struct {
	Group string        `json:"group"`
	Files []splitMember `json:"files"`
}

type splitMember struct {
	File     string   `json:"file"`
	Material Material `json:"material"`
}

func writeSplits(path string, c TextureConfig, tf TextureFiles, train, test []texturePool) error {
	s := textureSplits{Source: tf.Source(), PK3: texturePK3, Seed: c.Seed, MinSide: c.Size,
		Note: "train* folders draw on the train groups, val* and test* folders on the test groups"}
	for _, side := range []struct {
		list  *[]splitGroup
		pools []texturePool
	}{{&s.Train, train}, {&s.Test, test}} {
		byGroup := map[string]int{}
		for _, p := range side.pools {
			for _, t := range p.textures() {
				i, ok := byGroup[t.group]
				if !ok {
					i = len(*side.list)
					byGroup[t.group] = i
					*side.list = append(*side.list, splitGroup{Group: t.group})
				}
				(*side.list)[i].Files = append((*side.list)[i].Files, splitMember{File: t.file, Material: t.material})
			}
		}
	}
	for _, list := range [][]splitGroup{s.Train, s.Test} {
		sort.Slice(list, func(i, j int) bool { return list[i].Group < list[j].Group })
		for _, g := range list {
			sort.Slice(g.Files, func(i, j int) bool { return g.Files[i].File < g.Files[j].File })
		}
	}
	raw, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return nil
}

// copyLicence puts the package's copyright file (and CREDITS) beside the images derived from it.
func copyLicence(dir string, tf TextureFiles) error {
	for _, f := range []struct{ src, dst string }{{tf.Copyright, TextureLicenseFile}, {tf.Credits, TextureCreditsFile}} {
		if f.src == "" {
			continue
		}
		raw, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		head := fmt.Sprintf("The images in this folder are derived from textures of the Debian package %s\n(GPL-2+). Its %s file follows.\n\n", tf.Source(), filepath.Base(f.src))
		if err := os.WriteFile(filepath.Join(dir, f.dst), append([]byte(head), raw...), 0o644); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	return nil
}
