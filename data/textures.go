package data

import (
	"archive/zip"
	"bytes"
	"fmt"
	"hash/fnv"
	"image/jpeg"
	"io"
	"math"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// Material is a texture's surface category; texture-classes names its folders after them.
type Material string

// Materials, in the order classification tries them: the first whose words appear in a
// texture's name wins, so steel_rust is rust, gold_brick brick and marble02brikb marble.
const (
	Rust     Material = "rust"
	Grate    Material = "grate"
	Wood     Material = "wood"
	Marble   Material = "marble" // marble and tiles
	Concrete Material = "concrete"
	Brick    Material = "brick" // bricks and masonry blocks
	Stone    Material = "stone" // stone and rock
	Metal    Material = "metal"
	Organic  Material = "organic" // grass, dirt, moss, mud, sand
)

var materialWords = []struct {
	material Material
	words    []string
}{
	{Rust, []string{"rust"}},
	{Grate, []string{"grate", "grill", "grt"}},
	{Wood, []string{"wood", "plank"}},
	{Marble, []string{"marble", "tile"}},
	{Concrete, []string{"concrete", "concrt", "cement", "crete", "beton"}},
	{Brick, []string{"brick", "brik", "block", "blk"}},
	{Stone, []string{"stone", "rock", "stn", "slate", "cobble", "gravel"}},
	{Metal, []string{"metal", "steel", "plate", "pewter", "chrome", "clang", "iron", "zinc", "copper", "mtl", "met", "tin", "diamond", "rivet"}},
	{Organic, []string{"grass", "dirt", "moss", "mud", "sand", "hedge", "roots", "ground"}},
}

// isMaterialWord reports whether s is one of the words of materialWords.
func isMaterialWord(s string) bool {
	for _, mw := range materialWords {
		if slices.Contains(mw.words, s) {
			return true
		}
	}
	return false
}

// namesMaterial reports whether s holds a word of materialWords.
func namesMaterial(s string) bool {
	for _, mw := range materialWords {
		for _, w := range mw.words {
			if strings.Contains(s, w) {
				return true
			}
		}
	}
	return false
}

// falseFriends are removed from a name before looking for material words.
var falseFriends = []string{"thrust", "tinted", "dirty"}

// notSurfaceSets are texture sets, matched as name fragments, whose textures are effects, skies,
// liquids or lamps rather than surfaces.
var notSurfaceSets = []string{"sfx", "fx", "sky", "skies", "liquid", "light", "fog", "skin", "suction"}

// notSurfaceWords mark textures that are not a plain stretch of material: effects, lamps and
// their blend maps, reflection and specular maps, signs and logos, doors, trims and borders,
// objects (pipes, cables, crates), decals (blood, skulls).
var notSurfaceWords = []string{
	"light", "lite", "lamp", "glow", "blend", "flare", "lum", "spark", "beam", "zot", "electric",
	"plasma", "lava", "slime", "water", "pool", "fog", "sky", "fx",
	"logo", "banner", "sign", "warn", "wrn", "hazard", "achtung", "arrow", "text", "stripe",
	"portal", "teleport", "jumppad", "bouncepad", "bounce", "launch", "monitor", "comp", "switch",
	"button", "blink", "disco", "mirror", "env", "spec", "_lm",
	"door", "window", "arch", "trim", "border", "baseboard", "marbledge", "stair", "step", "pillar",
	"column", "tower", "support", "pipe", "cable", "wire", "crate", "relief",
	"blood", "skull", "sku", "flesh", "pentagram", "demon",
	"_ow", "grad", "killblock", "metalbase", "dvt",
}

// notSurfaceNames are textures that pass the word rules but, looked at, are not a plain stretch
// of material: a disco ball, studs, metal bands along an edge, hazard stripes, a manhole, warning
// signs.
var notSurfaceNames = map[string]bool{
	"blocks15_blue": true, "blocks15_c": true, "blocks15_iron_r": true, "blocks17_k": true,
	"blocks18c_1": true, "blocks18c_1a": true, "blocks18c_2": true, "xblocks10": true,
	"yellow_rustb": true, "yellow_rustb_v1": true, "yellow_rustbx128": true,
	"cementwall_btmmtl": true, "e8crete03f": true, "metal2_2": true, "tin_floor04ach": true,
	"caverock": true, "mossy": true,
}

// materialOverrides correct names that, looked at, mislead or say nothing: oquartz's copper is
// its stone pattern recoloured, pjrock6 is grass, hfloor3 a perforated plate.
var materialOverrides = map[string]Material{"oquartz/copper": Stone, "stone/pjrock6": Organic,
	"base_floor/hfloor3": Grate, "mc-oa-dm02/hfloor3_grey": Grate}

// classifyTexture returns the material of the texture textures/<set>/<name>, or "" when it is
// not a surface or its name names no material.
func classifyTexture(set, name string) Material {
	set, name = strings.ToLower(set), strings.ToLower(name)
	for _, w := range notSurfaceSets {
		if strings.Contains(set, w) {
			return ""
		}
	}
	if m, ok := materialOverrides[set+"/"+name]; ok {
		return m
	}
	if notSurfaceNames[name] {
		return ""
	}
	for _, w := range notSurfaceWords {
		if strings.Contains(name, w) {
			return ""
		}
	}
	// Light names abbreviate "light" to "lt" at the end of a word: ironcrosslt2, baslt4_1.
	for _, word := range strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) }) {
		if len(word) > 3 && strings.HasSuffix(word, "lt") {
			return ""
		}
	}
	name = withoutFalseFriends(name)
	for _, mw := range materialWords {
		for _, w := range mw.words {
			if strings.Contains(name, w) {
				return mw.material
			}
		}
	}
	return ""
}

func withoutFalseFriends(name string) string {
	for _, f := range falseFriends {
		name = strings.ReplaceAll(name, f, "_")
	}
	return name
}

// textureFamily is the part of a name its variants share: up to the end of the first number
// that follows three or more other characters (blocks17e, blocks17floor2 and blocks17_k are
// blocks17; e8crete03_blue is e8crete03), else the whole name.
func textureFamily(name string) string {
	name = strings.ToLower(name)
	for i := 3; i < len(name); i++ {
		if isDigit(name[i]) && !isDigit(name[i-1]) {
			j := i
			for j < len(name) && isDigit(name[j]) {
				j++
			}
			if nonDigits(name[:i]) >= 3 {
				return name[:j]
			}
		}
	}
	return name
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func nonDigits(s string) int {
	n := 0
	for i := range len(s) {
		if !isDigit(s[i]) {
			n++
		}
	}
	return n
}

// texture is one classified JPEG of the package.
type texture struct {
	file     string // entry in the pk3: textures/<set>/<name>.jpg
	set      string
	name     string // base name without extension
	material Material
	group    string   // its group of near-duplicates (groupTextures)
	major    Material // the most common material of its group, which the split stratifies by
	img      *plane   // RGB: (3, H, W)
}

// minFineDetail is the least root-mean-square of a texture's finest Haar detail bands, in gray
// levels, for it to be used: below it the surface is polished or blurred (chrome, smooth
// plaster), with none of the fine detail the datasets are for.
const minFineDetail = 2.5

// readTextures decodes the JPEGs under textures/ in the pk3 whose material is known, whose
// sides are both at least minSide (smaller ones would need upscaling) and which have fine
// detail (minFineDetail), sorted by file name.
func readTextures(pk3 string, minSide int) ([]*texture, error) {
	zr, err := zip.OpenReader(pk3)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (delete it to unpack the package again)", ErrBadArchive, pk3, err)
	}
	defer zr.Close()
	var out []*texture
	for _, f := range zr.File {
		name := strings.ToLower(f.Name)
		if !strings.HasPrefix(name, "textures/") || !(strings.HasSuffix(name, ".jpg") || strings.HasSuffix(name, ".jpeg")) {
			continue
		}
		set, base := path.Base(path.Dir(f.Name)), strings.TrimSuffix(path.Base(f.Name), path.Ext(f.Name))
		if strings.Count(name, "/") != 2 {
			continue
		}
		m := classifyTexture(set, base)
		if m == "" {
			continue
		}
		raw, err := readZipFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %v (delete it to unpack the package again)", ErrBadArchive, pk3, f.Name, err)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %v", ErrCorruptImage, pk3, f.Name, err)
		}
		if cfg.Width < minSide || cfg.Height < minSide {
			continue
		}
		img, err := jpeg.Decode(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %v", ErrCorruptImage, pk3, f.Name, err)
		}
		t := &texture{file: f.Name, set: set, name: base, material: m, img: toRGB(img)}
		if fineDetail(t.img) < minFineDetail {
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file < out[j].file })
	groupTextures(out)
	return out, nil
}

func readZipFile(f *zip.File) ([]byte, error) {
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// groupTextures puts near-duplicates into one group, so that a split by group keeps every
// variant of a texture on one side. Two textures are near-duplicates when
//   - their names share a family (textureFamily), or
//   - one name of four or more characters starts the other: pitted_rust and pitted_rust2 or
//     pitted_rust_small, e7panelwood and e7panelwood2; but "dirty" does not extend "dirt", an
//     extension naming another material makes another texture (stone_tile, rockgrass), and so
//     does a number after a bare material word (concrete, concrete03), or
//   - their pictures are the same: thumbnails that correlate above 0.95, as a copy in another
//     set or a recoloured or rescaled version has.
//
// Grouping errs towards joining: a joined pair costs the split some balance, a missed one leaks
// a texture into both splits. A group is named after the family of its first texture of the
// group's most common material.
func groupTextures(ts []*texture) {
	parent := make([]int, len(ts))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	names := make([]string, len(ts))
	thumbs := make([][]float64, len(ts))
	for i, t := range ts {
		names[i] = withoutFalseFriends(strings.ToLower(t.name))
		thumbs[i] = thumbnail(t.img)
	}
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			a, b := names[i], names[j]
			if len(a) > len(b) {
				a, b = b, a
			}
			extends := len(a) >= 4 && len(b) > len(a) && strings.HasPrefix(b, a) && !namesMaterial(b[len(a):]) &&
				!(isMaterialWord(a) && isDigit(b[len(a)]))
			if extends || textureFamily(a) == textureFamily(b) || correlation(thumbs[i], thumbs[j]) > 0.95 {
				parent[find(j)] = find(i)
			}
		}
	}
	members := map[int][]*texture{}
	for i, t := range ts {
		members[find(i)] = append(members[find(i)], t)
	}
	for _, group := range members {
		count := map[Material]int{}
		for _, t := range group {
			count[t.material]++
		}
		major := group[0].material
		for _, mw := range materialWords {
			if count[mw.material] > count[major] {
				major = mw.material
			}
		}
		var name string
		for _, t := range group {
			if t.material == major {
				name = textureFamily(t.name)
				break
			}
		}
		for _, t := range group {
			t.group, t.major = name, major
		}
	}
}

// fineDetail is the root-mean-square of the luma's level-1 Haar detail bands (LH, HL, HH,
// orthonormal), in gray levels.
func fineDetail(p *plane) float64 {
	g := p.gray()
	sum, n := 0.0, 0
	for y := 0; y+1 < g.h; y += 2 {
		for x := 0; x+1 < g.w; x += 2 {
			a, b := float64(g.pix[y*g.w+x]), float64(g.pix[y*g.w+x+1])
			c, d := float64(g.pix[(y+1)*g.w+x]), float64(g.pix[(y+1)*g.w+x+1])
			lh, hl, hh := (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2
			sum += lh*lh + hl*hl + hh*hh
			n += 3
		}
	}
	return math.Sqrt(sum / float64(n))
}

// thumbnailSide is the side of the gray thumbnail that near-duplicate detection compares.
const thumbnailSide = 8

// thumbnail returns the texture's luma averaged over an 8x8 grid, normalised to zero mean and
// unit length; nil for a nearly flat texture, which has no structure to compare.
func thumbnail(p *plane) []float64 {
	g := p.gray()
	t := make([]float64, thumbnailSide*thumbnailSide)
	n := make([]float64, len(t))
	for y := 0; y < g.h; y++ {
		for x := 0; x < g.w; x++ {
			k := (y*thumbnailSide/g.h)*thumbnailSide + x*thumbnailSide/g.w
			t[k] += float64(g.pix[y*g.w+x])
			n[k]++
		}
	}
	mean := 0.0
	for k := range t {
		t[k] /= n[k]
		mean += t[k] / float64(len(t))
	}
	norm := 0.0
	for k := range t {
		t[k] -= mean
		norm += t[k] * t[k]
	}
	if math.Sqrt(norm/float64(len(t))) < 2 { // under two gray levels of variation
		return nil
	}
	for k := range t {
		t[k] /= math.Sqrt(norm)
	}
	return t
}

func correlation(a, b []float64) float64 {
	if a == nil || b == nil {
		return 0
	}
	s := 0.0
	for k := range a {
		s += a[k] * b[k]
	}
	return s
}

// testGroupShare is the share of each material's groups that goes to the test split.
const testGroupShare = 0.25

// splitGroups assigns each group to the test split (true) or the training split (false). The
// groups are stratified by their most common material: within each, they are shuffled by seed
// and a quarter of them, at least one when there are two or more, go to test.
func splitGroups(ts []*texture, seed uint64) map[string]bool {
	byMaterial := map[Material][]string{}
	seen := map[string]bool{}
	for _, t := range ts {
		if !seen[t.group] {
			seen[t.group] = true
			byMaterial[t.major] = append(byMaterial[t.major], t.group)
		}
	}
	test := map[string]bool{}
	for k, mw := range materialWords {
		groups := byMaterial[mw.material]
		sort.Strings(groups)
		r := newSampleRand(seed, streamID("split"), k)
		for i := len(groups) - 1; i > 0; i-- {
			j := r.intn(i + 1)
			groups[i], groups[j] = groups[j], groups[i]
		}
		n := int(math.Round(testGroupShare * float64(len(groups))))
		if len(groups) >= 2 {
			n = max(1, min(n, len(groups)-1))
		}
		for i, g := range groups {
			test[g] = i < n
		}
	}
	return test
}

// texturePool is what one side of the split offers a builder: per material, the groups with
// textures of it, each as its textures of that material.
type texturePool struct {
	materials []Material // those with at least one group, in materialWords order
	groups    map[Material][][]*texture
}

// newPool collects the textures of the given materials on one side of the split.
func newPool(ts []*texture, inTest map[string]bool, test bool, materials []Material) texturePool {
	p := texturePool{groups: map[Material][][]*texture{}}
	index := map[Material]map[string]int{}
	for _, t := range ts {
		if inTest[t.group] != test || !slices.Contains(materials, t.material) {
			continue
		}
		if index[t.material] == nil {
			index[t.material] = map[string]int{}
		}
		k, ok := index[t.material][t.group]
		if !ok {
			k = len(p.groups[t.material])
			index[t.material][t.group] = k
			p.groups[t.material] = append(p.groups[t.material], nil)
		}
		p.groups[t.material][k] = append(p.groups[t.material][k], t)
	}
	for _, mw := range materialWords {
		if len(p.groups[mw.material]) > 0 {
			p.materials = append(p.materials, mw.material)
		}
	}
	return p
}

func (p texturePool) empty() bool { return len(p.materials) == 0 }

// draw picks a material uniformly, then one of its groups, then one of the group's textures,
// so that neither a material nor a family with many variants dominates.
func (p texturePool) draw(r sampleRand) *texture {
	return p.drawOf(r, p.materials[r.intn(len(p.materials))])
}

func (p texturePool) drawOf(r sampleRand, m Material) *texture {
	groups := p.groups[m]
	g := groups[r.intn(len(groups))]
	return g[r.intn(len(g))]
}

// textures lists the pool's textures, sorted by file.
func (p texturePool) textures() []*texture {
	var out []*texture
	for _, m := range p.materials {
		for _, g := range p.groups[m] {
			out = append(out, g...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file < out[j].file })
	return out
}

// cropTexture cuts a w x h window from t at a random place: half of the time at the texture's
// native resolution, otherwise from a window up to twice as large (as far as the texture allows)
// shrunk to w x h with the bicubic filter, so the crops keep the texture's fine detail.
func cropTexture(r sampleRand, t *texture, w, h int) *plane {
	img := t.img
	ws, hs := w, h
	if most := min(2, float64(img.w)/float64(w), float64(img.h)/float64(h)); r.coin() && most > 1 {
		s := 1 + uniform(r)*(most-1)
		ws, hs = min(img.w, int(math.Round(s*float64(w)))), min(img.h, int(math.Round(s*float64(h))))
	}
	return img.crop(r.intn(img.w-ws+1), r.intn(img.h-hs+1), ws, hs).resize(w, h)
}

// uniform returns a float64 in [0, 1).
func uniform(r sampleRand) float64 { return float64(r.pcg.Uint64()>>11) / (1 << 53) }

// streamID names a random stream: the epoch argument of newSampleRand, so that streams for
// different purposes and folders never coincide.
func streamID(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32())
}
