package data

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// fakeTexture is one JPEG of the synthetic package: a base colour with dark mortar lines, 2
// pixels wide and 10 to 20 apart at places of its own (strong edges; no two textures have the
// same picture), and per-pixel noise (fine detail).
type fakeTexture struct {
	file string // path inside the pk3
	w, h int
	rgb  [3]int
}

// magenta marks textures that must never reach a dataset: excluded sets and names, and
// textures too small for the test's --size 32. No usable texture comes near it.
var magenta = [3]int{230, 20, 230}

func isMagenta(r, g, b uint8) bool { return r > 170 && g < 90 && b > 170 }

// fakeTextures has, per material, one to four groups (stone, brick and metal have the four that
// make a class of texture-classes), variants that must share a group, and textures that must be
// skipped.
var fakeTextures = []fakeTexture{
	{"textures/stone/rock1.jpg", 64, 64, [3]int{120, 120, 120}},
	{"textures/stone/rock1b.jpg", 64, 64, [3]int{160, 160, 160}},
	{"textures/stone/cobbles.jpg", 64, 96, [3]int{160, 120, 80}},
	{"textures/gothic_wall/slate2.jpg", 64, 64, [3]int{40, 80, 120}},
	{"textures/stone/rockface9.jpg", 64, 64, [3]int{80, 80, 40}},
	{"textures/gothic_block/blocks17.jpg", 96, 96, [3]int{160, 40, 40}},
	{"textures/gothic_block/blocks17e.jpg", 64, 64, [3]int{200, 80, 40}},
	{"textures/gothic_floor/blocks17floor2.jpg", 64, 64, [3]int{120, 40, 40}},
	{"textures/gothic_wall/redbrick.jpg", 64, 64, [3]int{200, 120, 120}},
	{"textures/gothic_wall/streetbricks3.jpg", 48, 64, [3]int{80, 40, 0}},
	{"textures/oquartz/sbrick5.jpg", 64, 64, [3]int{40, 0, 40}},
	{"textures/base_wall/concrete2.jpg", 64, 64, [3]int{200, 200, 160}},
	{"textures/base_floor/cement.jpg", 64, 64, [3]int{160, 200, 200}},
	{"textures/base_wall/steelplate.jpg", 64, 64, [3]int{40, 120, 200}},
	{"textures/base_floor/clang_floor.jpg", 64, 64, [3]int{80, 160, 200}},
	{"textures/base_trim/pewter.jpg", 64, 64, [3]int{120, 160, 120}},
	{"textures/base_trim/pewter_shiney.jpg", 64, 64, [3]int{80, 120, 80}},
	{"textures/proto2/metwall.jpg", 64, 64, [3]int{0, 80, 40}},
	{"textures/gothic_trim/pitted_rust3.jpg", 64, 64, [3]int{200, 120, 40}},
	{"textures/gothic_trim/pitted_rust3_black.jpg", 64, 64, [3]int{40, 40, 40}},
	{"textures/base_wall/rusted.jpg", 64, 64, [3]int{160, 80, 0}},
	{"textures/base_floor/grate1.jpg", 64, 64, [3]int{0, 40, 80}},
	{"textures/e7/e7panelwood.jpg", 64, 64, [3]int{120, 80, 40}},
	{"textures/e7/oakwood.jpg", 64, 64, [3]int{200, 160, 80}},
	// never used, each for one reason: not surfaces (set, name), no material (thrust is no
	// rust), outside textures/, too small for --size 32
	{"textures/sfx/rockwall.jpg", 64, 64, magenta},
	{"textures/skies/stonecloud.jpg", 64, 64, magenta},
	{"textures/base_light/metal1.jpg", 64, 64, magenta},
	{"textures/gothic_block/ironcrosslt2.jpg", 64, 64, magenta},
	{"textures/base_wall/skin6thrust.jpg", 64, 64, magenta},
	{"textures/base_wall/metal_logo.jpg", 64, 64, magenta},
	{"textures/base_wall/stone_banner.jpg", 64, 64, magenta},
	{"textures/stone/tinyrock.jpg", 24, 24, magenta},
	{"textures/base_wall/smallsteel.jpg", 64, 24, magenta},
	{"env/stone_up.jpg", 64, 64, magenta},
}

func (f fakeTexture) jpeg(t testing.TB) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(f.file)), uint64(f.rgb[0]+7*f.rgb[1]+13*f.rgb[2])))
	lines := func(n int) []bool {
		on := make([]bool, n)
		for at := rng.IntN(8); at < n; at += 10 + rng.IntN(11) {
			on[at] = true
			on[min(at+1, n-1)] = true
		}
		return on
	}
	cols, rows := lines(f.w), lines(f.h)
	img := image.NewRGBA(image.Rect(0, 0, f.w, f.h))
	for y := 0; y < f.h; y++ {
		for x := 0; x < f.w; x++ {
			mortar := (cols[x] || rows[y]) && f.rgb != magenta
			for c := 0; c < 3; c++ {
				v := f.rgb[c] + rng.IntN(25) - 12
				if mortar {
					v = v * 3 / 10
				}
				img.Pix[img.PixOffset(x, y)+c] = uint8(max(0, min(255, v)))
			}
			img.Pix[img.PixOffset(x, y)+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fakePK3(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range fakeTextures {
		w, err := zw.Create(f.file)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.jpeg(t))
	}
	w, _ := zw.Create("textures/base_wall/stonea.tga") // not a JPEG: ignored
	w.Write([]byte("not a picture"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const (
	fakeCopyright = "Files: *\nLicense: GPL-2+\n"
	fakeCredits   = "Textures by the OpenArena team\n"
)

type tarFile struct {
	name string
	data []byte
}

func xzTar(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(xw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeAR writes an ar archive as dpkg-deb does.
func writeAR(t testing.TB, path string, members []tarFile) {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeFakeDeb writes a package like openarena-081-textures: control, copyright, CREDITS and
// the pk3 (left out when pk3 is nil).
func writeFakeDeb(t testing.TB, path string, pk3 []byte) {
	t.Helper()
	control := xzTar(t, []tarFile{{"./control", []byte("Package: " + TexturePackage + "\nVersion: 0.8.5split-14\nArchitecture: all\n")}})
	files := []tarFile{
		{"./usr/share/doc/openarena-081-textures/copyright", []byte(fakeCopyright)},
		{"./usr/share/doc/openarena-081-textures/CREDITS", []byte(fakeCredits)},
	}
	if pk3 != nil {
		files = append(files, tarFile{"./usr/share/games/openarena/baseoa/pak4-textures.pk3", pk3})
	}
	writeAR(t, path, []tarFile{{"debian-binary", []byte("2.0\n")}, {"control.tar.xz", control}, {"data.tar.xz", xzTar(t, files)}})
}

var fakeDebCache struct {
	raw []byte
}

// fakeDeb returns the path of a fresh copy of the synthetic package in a temporary folder.
func fakeDeb(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), TexturePackage+"_0.8.5split-14_all.deb")
	if fakeDebCache.raw == nil {
		writeFakeDeb(t, path, fakePK3(t))
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fakeDebCache.raw = raw
	}
	writeRaw(t, path, fakeDebCache.raw)
	return path
}

func smallTextureConfig(name, deb, cache, out string) TextureConfig {
	c := DefaultTextureConfig(name, deb, cache, out)
	c.Size, c.Train, c.Val, c.Test = 32, 12, 2, 6
	if name == TextureClasses {
		c.Train, c.Val, c.Test = 5, 0, 3
	}
	return c
}

func mustBuildTextures(t *testing.T, cfg TextureConfig) BuildResult {
	t.Helper()
	res, err := BuildTextures(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readSplits(t *testing.T, dir string) textureSplits {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, TextureSplitsFile))
	if err != nil {
		t.Fatal(err)
	}
	var s textureSplits
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// splitOf maps each listed file to "train" or "test", failing when a group or a file is on both
// sides or when listed variants of one texture are split up.
func splitOf(t *testing.T, s textureSplits) map[string]string {
	t.Helper()
	side := map[string]string{}
	groups := map[string]string{}
	for _, l := range []struct {
		name   string
		groups []splitGroup
	}{{"train", s.Train}, {"test", s.Test}} {
		for _, g := range l.groups {
			if other, ok := groups[g.Group]; ok && other != l.name {
				t.Fatalf("group %s is in both splits", g.Group)
			}
			groups[g.Group] = l.name
			for _, f := range g.Files {
				if other, ok := side[f.File]; ok && other != l.name {
					t.Fatalf("%s is in both splits", f.File)
				}
				side[f.File] = l.name
			}
		}
	}
	for _, family := range [][]string{
		{"textures/stone/rock1.jpg", "textures/stone/rock1b.jpg"},
		{"textures/gothic_block/blocks17.jpg", "textures/gothic_block/blocks17e.jpg", "textures/gothic_floor/blocks17floor2.jpg"},
		{"textures/base_trim/pewter.jpg", "textures/base_trim/pewter_shiney.jpg"},
		{"textures/gothic_trim/pitted_rust3.jpg", "textures/gothic_trim/pitted_rust3_black.jpg"},
	} {
		for _, f := range family[1:] {
			if side[f] != side[family[0]] {
				t.Fatalf("variants split up: %s in %q, %s in %q", family[0], side[family[0]], f, side[f])
			}
		}
	}
	return side
}

func decodeRGBA(t *testing.T, path string) *image.RGBA {
	t.Helper()
	img, ok := decodePNG(t, path).(*image.RGBA)
	if !ok {
		t.Fatalf("%s is not an RGB PNG", path)
	}
	return img
}

// pngFiles lists the PNGs of dir's subfolders (not the contact sheet), sorted.
func pngFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".png") && filepath.Dir(p) != dir {
			out = append(out, p)
		}
		return err
	})
	return out
}

// checkNoMagenta fails when a dataset image has pixels of an excluded or too-small texture.
func checkNoMagenta(t *testing.T, dir string) {
	t.Helper()
	for _, p := range pngFiles(t, dir) {
		img := decodeRGBA(t, p)
		for i := 0; i < len(img.Pix); i += 4 {
			if isMagenta(img.Pix[i], img.Pix[i+1], img.Pix[i+2]) {
				t.Fatalf("%s has a pixel of an excluded texture", p)
			}
		}
	}
}

// checkCommon asserts what every texture dataset has: the splits file without leaks or
// excluded files, the licence files and the contact sheet, and no excluded pixels.
func checkCommon(t *testing.T, dir string) map[string]string {
	t.Helper()
	side := splitOf(t, readSplits(t, dir))
	for _, f := range fakeTextures {
		if f.rgb == magenta && side[f.file] != "" {
			t.Fatalf("%s is listed in %s", f.file, TextureSplitsFile)
		}
	}
	for name, want := range map[string]string{TextureLicenseFile: fakeCopyright, TextureCreditsFile: fakeCredits} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !strings.Contains(string(raw), want) || !strings.Contains(string(raw), "GPL-2+") {
			t.Fatalf("%s: %q %v, want the package's file", name, raw, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ContactSheetFile)); err != nil {
		t.Fatal(err)
	}
	checkNoMagenta(t, dir)
	return side
}

func TestTextureSketch2Texture(t *testing.T) {
	deb, cache, out := fakeDeb(t), t.TempDir(), t.TempDir()
	res := mustBuildTextures(t, smallTextureConfig(Sketch2Texture, deb, cache, out))
	if res.Counts["train"] != 12 || res.Counts["val"] != 2 || res.Counts["test"] != 6 {
		t.Fatalf("counts %v", res.Counts)
	}
	checkCommon(t, res.Dir)
	dcfg := DefaultPix2PixConfig(res.Dir)
	dcfg.LoadSize, dcfg.CropSize = 32, 32
	if d := mustOpen(t, dcfg); d.Len() != 12 {
		t.Fatalf("aligned dataset of %d", d.Len())
	}
	edges, strong, regions, exact := 0, 0, 0, 0
	for _, p := range pngFiles(t, res.Dir) {
		img := decodeRGBA(t, p)
		if img.Bounds().Dx() != 64 || img.Bounds().Dy() != 32 {
			t.Fatalf("%s is %v, want 64x32 (A|B)", p, img.Bounds())
		}
		rects := sketchRegions(t, img, 32)
		if len(rects) < 2 || len(rects) > 6 {
			t.Fatalf("%s: %d regions, want 2..6", p, len(rects))
		}
		regions += len(rects)
		near := make([]bool, 32*32) // within a pixel of a region's border
		for _, r := range rects {
			// Off by rounding only. sketchRegions misses a region's first or last row or column
			// when an edge line covers it, so take the best of the rectangles it may be.
			worst := math.Inf(1)
			for grow := 0; grow < 36; grow++ {
				g := image.Rect(r.rect.Min.X-grow%2, r.rect.Min.Y-grow/2%2, r.rect.Max.X+grow/4%3, r.rect.Max.Y+grow/12).Intersect(image.Rect(0, 0, 32, 32))
				mean, w := meanColour(img, 32, g), 0.0
				for c := 0; c < 3; c++ {
					w = max(w, math.Abs(float64(r.flat[c])-mean[c]))
				}
				worst = min(worst, w)
			}
			if worst > 2 {
				t.Fatalf("%s: region %v of A is %v, the mean of B there is %.1f", p, r.rect, r.flat, meanColour(img, 32, r.rect))
			}
			if worst <= 0.5+1e-9 {
				exact++
			}
			for y := r.rect.Min.Y; y < r.rect.Max.Y; y++ {
				for x := r.rect.Min.X; x < r.rect.Max.X; x++ {
					if x <= r.rect.Min.X+1 || y <= r.rect.Min.Y+1 || x >= r.rect.Max.X-2 || y >= r.rect.Max.Y-2 {
						near[y*32+x] = true
					}
				}
			}
		}
		// The share of A's edge pixels where B's gradient is above its median over the region:
		// a half for lines drawn anywhere, near all for lines on B's edges.
		g := gradientB(img, 32)
		for _, r := range rects {
			var inner []float64
			var lines []int
			for y := r.rect.Min.Y; y < r.rect.Max.Y; y++ {
				for x := r.rect.Min.X; x < r.rect.Max.X; x++ {
					if near[y*32+x] {
						continue
					}
					inner = append(inner, g[y*32+x])
					if o := img.PixOffset(x, y); img.Pix[o]|img.Pix[o+1]|img.Pix[o+2] == 0 {
						lines = append(lines, y*32+x)
					}
				}
			}
			if len(inner) == 0 {
				continue
			}
			slices.Sort(inner)
			for _, i := range lines {
				edges++
				if g[i] > inner[len(inner)/2] {
					strong++
				}
			}
		}
	}
	if exact < regions*9/10 {
		t.Fatalf("%d of %d regions of A have the mean colour of B, rounded", exact, regions)
	}
	if edges < 100 || float64(strong) < 0.9*float64(edges) {
		t.Fatalf("%d of A's %d edge pixels lie on B gradients above the median: want edge lines where B changes", strong, edges)
	}
	t.Logf("%d regions, %d of them flat in B's mean colour; %d of %d edge pixels on strong B gradients", regions, exact, strong, edges)
}

type sketchRegion struct {
	rect image.Rectangle // in A's coordinates
	flat [3]uint8
}

// sketchRegions recovers the rectangles of an A|B pair from A: each flat colour is one region;
// its bounding box, grown by the black border drawn on its right and bottom sides, is the region
// but for rows and columns that are all edge lines.
func sketchRegions(t *testing.T, img *image.RGBA, size int) []sketchRegion {
	t.Helper()
	boxes := map[[3]uint8]image.Rectangle{}
	var order [][3]uint8
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			o := img.PixOffset(x, y)
			c := [3]uint8{img.Pix[o], img.Pix[o+1], img.Pix[o+2]}
			if c == [3]uint8{} {
				continue
			}
			b, ok := boxes[c]
			if !ok {
				order = append(order, c)
				b = image.Rect(x, y, x+1, y+1)
			}
			boxes[c] = b.Union(image.Rect(x, y, x+1, y+1))
		}
	}
	var out []sketchRegion
	for _, c := range order {
		r := boxes[c]
		if r.Max.X < size {
			r.Max.X++
		}
		if r.Max.Y < size {
			r.Max.Y++
		}
		out = append(out, sketchRegion{r, c})
	}
	for i, a := range out {
		for _, b := range out[i+1:] {
			if a.rect.Overlaps(b.rect) {
				t.Fatalf("%v: regions %v and %v overlap: A is not flat per region", img.Bounds(), a, b)
			}
		}
	}
	return out
}

// meanColour is the mean of B (the right half) over r.
func meanColour(img *image.RGBA, size int, r image.Rectangle) [3]float64 {
	var s [3]float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			o := img.PixOffset(size+x, y)
			for c := 0; c < 3; c++ {
				s[c] += float64(img.Pix[o+c])
			}
		}
	}
	n := float64(r.Dx() * r.Dy())
	return [3]float64{s[0] / n, s[1] / n, s[2] / n}
}

// gradientB is the Sobel gradient magnitude of B's luma, blurred as the edge detector does.
func gradientB(img *image.RGBA, size int) []float64 {
	luma := make([]float64, size*size)
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			o := img.PixOffset(size+x, y)
			luma[y*size+x] = 0.299*float64(img.Pix[o]) + 0.587*float64(img.Pix[o+1]) + 0.114*float64(img.Pix[o+2])
		}
	}
	luma = gaussianBlur(luma, size, size, DefaultTextureEdgeParams().Sigma)
	l := func(x, y int) float64 { return luma[clampInt(y, 0, size-1)*size+clampInt(x, 0, size-1)] }
	g := make([]float64, size*size)
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			gx := l(x+1, y-1) + 2*l(x+1, y) + l(x+1, y+1) - l(x-1, y-1) - 2*l(x-1, y) - l(x-1, y+1)
			gy := l(x-1, y+1) + 2*l(x, y+1) + l(x+1, y+1) - l(x-1, y-1) - 2*l(x, y-1) - l(x+1, y-1)
			g[y*size+x] = math.Hypot(gx, gy)
		}
	}
	return g
}

// Every crop of stone2metal's test folders comes from a texture of the test groups, and A only
// from stone-like textures, B only from metal-like ones: each crop's mean colour is nearest to
// the mean colour of the texture it was cut from.
func TestTextureStone2MetalDomainsAndSplits(t *testing.T) {
	deb, cache, out := fakeDeb(t), t.TempDir(), t.TempDir()
	res := mustBuildTextures(t, smallTextureConfig(Stone2Metal, deb, cache, out))
	want := map[string]int{"trainA": 12, "trainB": 12, "valA": 2, "valB": 2, "testA": 6, "testB": 6}
	for k, v := range want {
		if res.Counts[k] != v {
			t.Fatalf("counts %v, want %v", res.Counts, want)
		}
	}
	side := checkCommon(t, res.Dir)
	means := map[string][3]float64{}
	for _, f := range fakeTextures {
		if f.rgb == magenta {
			continue
		}
		img, _ := jpeg.Decode(bytes.NewReader(f.jpeg(t)))
		p := toRGB(img)
		var m [3]float64
		for c := 0; c < 3; c++ {
			for _, v := range p.pix[c*p.w*p.h : (c+1)*p.w*p.h] {
				m[c] += float64(v) / float64(p.w*p.h)
			}
		}
		means[f.file] = m
	}
	domain := map[string][]string{"A": {"stone", "gothic_wall/slate", "block", "brick", "concrete", "cement"}, "B": {"steel", "clang", "pewter", "metwall", "rust", "grate"}}
	for _, p := range pngFiles(t, res.Dir) {
		folder := filepath.Base(filepath.Dir(p))
		img := decodeRGBA(t, p)
		if img.Bounds() != image.Rect(0, 0, 32, 32) {
			t.Fatalf("%s is %v, want 32x32", p, img.Bounds())
		}
		var m [3]float64
		for i := 0; i < len(img.Pix); i += 4 {
			for c := 0; c < 3; c++ {
				m[c] += float64(img.Pix[i+c]) / (32 * 32)
			}
		}
		best, dist := "", math.Inf(1)
		for f, fm := range means {
			if d := math.Hypot(math.Hypot(m[0]-fm[0], m[1]-fm[1]), m[2]-fm[2]); d < dist {
				best, dist = f, d
			}
		}
		wantSide := "train"
		if !strings.HasPrefix(folder, "train") {
			wantSide = "test"
		}
		if side[best] != wantSide {
			t.Errorf("%s looks cut from %s, which is in the %q split", p, best, side[best])
		}
		if !slices.ContainsFunc(domain[folder[len(folder)-1:]], func(w string) bool { return strings.Contains(best, w) }) {
			t.Errorf("%s looks cut from %s, not a texture of domain %s", p, best, folder[len(folder)-1:])
		}
	}
	dcfg := DefaultCycleGANConfig(res.Dir)
	dcfg.Phase, dcfg.Train, dcfg.LoadSize, dcfg.CropSize = "test", false, 32, 32
	if d := mustOpen(t, dcfg); d.Len() != 6 {
		t.Fatalf("unaligned test set of %d", d.Len())
	}
}

func TestTextureClassesLayout(t *testing.T) {
	deb, cache, out := fakeDeb(t), t.TempDir(), t.TempDir()
	res := mustBuildTextures(t, smallTextureConfig(TextureClasses, deb, cache, out))
	checkCommon(t, res.Dir)
	var classes []string
	for _, split := range []string{"train", "test"} {
		entries, err := os.ReadDir(filepath.Join(res.Dir, split))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
			files, _ := os.ReadDir(filepath.Join(res.Dir, split, e.Name()))
			want := map[string]int{"train": 5, "test": 3}[split]
			if len(files) != want || res.Counts[split+"/"+e.Name()] != want {
				t.Fatalf("%s/%s has %d images, want %d", split, e.Name(), len(files), want)
			}
		}
		if classes == nil {
			classes = names
		} else if !slices.Equal(classes, names) {
			t.Fatalf("train classes %v, test classes %v", classes, names)
		}
	}
	// Stone, brick and metal have minClassGroups groups; the others fewer.
	if want := []string{"brick", "metal", "stone"}; !slices.Equal(classes, want) {
		t.Fatalf("classes %v, want %v", classes, want)
	}
}

// Same flags: byte-identical files. Another seed: other images (and, here, another split).
func TestTextureBuildsAreDeterministic(t *testing.T) {
	deb, cache := fakeDeb(t), t.TempDir()
	build := func(seed uint64) map[string][]byte {
		cfg := smallTextureConfig(Sketch2Texture, deb, cache, t.TempDir())
		cfg.Seed = seed
		res := mustBuildTextures(t, cfg)
		files := map[string][]byte{}
		filepath.WalkDir(res.Dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				raw, _ := os.ReadFile(p)
				rel, _ := filepath.Rel(res.Dir, p)
				files[rel] = raw
			}
			return err
		})
		return files
	}
	a, b, c := build(7), build(7), build(8)
	if len(a) != len(b) {
		t.Fatalf("%d files, then %d", len(a), len(b))
	}
	for name, raw := range a {
		if !bytes.Equal(raw, b[name]) {
			t.Fatalf("%s differs between two builds with the same flags", name)
		}
	}
	same := 0
	for name, raw := range a {
		if strings.HasSuffix(name, ".png") && bytes.Equal(raw, c[name]) {
			same++
		}
	}
	if same > 1 {
		t.Fatalf("%d images are the same with --seed 7 and --seed 8", same)
	}
}

// Same flags: nothing rewritten and the package is not unpacked again. Other flags: refused
// unless forced.
func TestTextureBuildIsIdempotentAndCachesThePackage(t *testing.T) {
	deb, cache, out := fakeDeb(t), t.TempDir(), t.TempDir()
	cfg := smallTextureConfig(Stone2Metal, deb, cache, out)
	res := mustBuildTextures(t, cfg)
	pk3 := filepath.Join(cache, TexturePackage+"_0.8.5split-14", texturePK3)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(pk3, old, old); err != nil {
		t.Fatal(err)
	}
	if again := mustBuildTextures(t, cfg); !again.Skipped || again.Counts["trainA"] != 12 {
		t.Fatalf("second run %+v, want skipped", again)
	}
	cfg.Seed = 2
	_, err := BuildTextures(cfg)
	expectErr(t, err, ErrDatasetExists, res.Dir)
	if !strings.Contains(err.Error(), "--seed 1 (now 2)") {
		t.Fatalf("error %q does not name the changed flag", err)
	}
	cfg.Force = true
	if res, err := BuildTextures(cfg); err != nil || res.Skipped {
		t.Fatalf("forced: %+v %v", res, err)
	}
	if st, _ := os.Stat(pk3); !st.ModTime().Equal(old) {
		t.Fatal("the cached pk3 was extracted again")
	}
	// A cached pk3 of the wrong size (an interrupted copy) is extracted again.
	if err := os.Truncate(pk3, 100); err != nil {
		t.Fatal(err)
	}
	cfg.Seed = 3
	mustBuildTextures(t, cfg)
	if st, _ := os.Stat(pk3); st.Size() <= 100 {
		t.Fatal("a truncated cached pk3 was used")
	}
}

func TestTextureBrokenPackages(t *testing.T) {
	good, err := os.ReadFile(fakeDeb(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	noPK3 := filepath.Join(dir, "nopk3.deb")
	writeFakeDeb(t, noPK3, nil)
	flipped := bytes.Clone(good)
	for i := len(flipped) / 2; i < len(flipped)/2+64; i++ {
		flipped[i] ^= 0x5a
	}
	for _, c := range []struct {
		name string
		raw  []byte // nil: keep the file written above
		want error
		says string
	}{
		{"truncated.deb", good[:len(good)/2], ErrBadArchive, "truncated.deb"},
		{"header-only.deb", good[:100], ErrBadArchive, "header-only.deb"},
		{"corrupt.deb", flipped, ErrBadArchive, "corrupt.deb"},
		{"not-a-deb.deb", []byte("PK\x03\x04 a zip, not an ar archive"), ErrBadArchive, "not-a-deb.deb"},
		{"nopk3.deb", nil, ErrBadArchive, texturePK3},
		{"missing.deb", nil, ErrNoTexturePkg, "missing.deb"},
	} {
		path := filepath.Join(dir, c.name)
		if c.raw != nil {
			writeRaw(t, path, c.raw)
		}
		_, err := BuildTextures(smallTextureConfig(Sketch2Texture, path, t.TempDir(), t.TempDir()))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: %v, want %v naming %s", c.name, err, c.want, c.says)
		}
	}
	// A corrupt pk3 in the cache (same size, other bytes) is named.
	deb, cache := fakeDeb(t), t.TempDir()
	mustBuildTextures(t, smallTextureConfig(Stone2Metal, deb, cache, t.TempDir()))
	pk3 := filepath.Join(cache, TexturePackage+"_0.8.5split-14", texturePK3)
	st, _ := os.Stat(pk3)
	writeRaw(t, pk3, bytes.Repeat([]byte{0x42}, int(st.Size())))
	_, err = BuildTextures(smallTextureConfig(Stone2Metal, deb, cache, t.TempDir()))
	expectErr(t, err, ErrBadArchive, pk3)
}

func TestTextureFetchNamesPackageCommandAndFlag(t *testing.T) {
	bin := t.TempDir()
	t.Setenv("PATH", bin)
	check := func(err error) {
		t.Helper()
		for _, want := range []string{TexturePackage, "apt-get download", "--textures"} {
			if !errors.Is(err, ErrNoTexturePkg) || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v does not name %q", err, want)
			}
		}
	}
	_, err := FetchTexturePackage(t.TempDir())
	check(err)
	writeRaw(t, filepath.Join(bin, "apt-get"), []byte("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n"))
	os.Chmod(filepath.Join(bin, "apt-get"), 0o755)
	_, err = FetchTexturePackage(t.TempDir())
	check(err)
	if !strings.Contains(err.Error(), "Unable to locate package") {
		t.Fatalf("error %v does not pass apt-get's message on", err)
	}
	// apt-get download writes into its working directory, which must be the cache.
	deb := fakeDeb(t)
	writeRaw(t, filepath.Join(bin, "apt-get"), []byte("#!/bin/sh\nPATH=/usr/bin:/bin\n[ \"$1 $2\" = \"download "+TexturePackage+"\" ] || exit 1\ncp "+deb+" ./"+TexturePackage+"_9_all.deb\n"))
	cache := filepath.Join(t.TempDir(), "new")
	got, err := FetchTexturePackage(cache)
	if err != nil || got != filepath.Join(cache, TexturePackage+"_9_all.deb") {
		t.Fatalf("fetched %q, %v", got, err)
	}
	if again, err := FetchTexturePackage(cache); err != nil || again != got {
		t.Fatalf("second fetch %q %v, want the cached file", again, err)
	}
}

func TestTextureConfigValidateNamesFlag(t *testing.T) {
	for flag, mut := range map[string]func(*TextureConfig){
		"--name":     func(c *TextureConfig) { c.Name = "bricks" },
		"--size":     func(c *TextureConfig) { c.Size = 16 },
		"--train":    func(c *TextureConfig) { c.Train = 0 },
		"--textures": func(c *TextureConfig) { c.Deb = "" },
		"--cache":    func(c *TextureConfig) { c.Cache = "" },
		"--edge-low": func(c *TextureConfig) { c.Edges.Low = 2 },
	} {
		c := DefaultTextureConfig(Sketch2Texture, "x.deb", "cache", "out")
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: %v", flag, err)
		}
	}
}

func TestTextureClassify(t *testing.T) {
	for _, c := range []struct {
		set, name string
		want      Material
	}{
		{"gothic_block", "blocks17", Brick},
		{"gothic_trim", "pitted_rust3_black", Rust},
		{"clown", "steel_rust", Rust},        // rust before metal
		{"gothic_wall", "gold_brick", Brick}, // brick, not gold
		{"proto2", "marble02brikb", Marble},
		{"base_trim", "dirty_pewter", Metal}, // "dirty" is no dirt
		{"e7", "e7panelwood", Wood},
		{"acc_dm5", "roots_moss", Organic},
		{"oquartz", "hedge", Organic}, // "hedge" is no edge
		{"base_floor", "clanggrate", Grate},
		{"base_floor", "hfloor3", Grate},          // by eye
		{"mc-oa-dm04", "ano_techfloor1_dark", ""}, // no grate for all its "hfloor"
		{"oquartz", "copper", Stone},              // by eye: the stone recoloured
		{"skin", "skin6thrust", ""},               // thrust is no rust, and skin no surface
		{"gothic_wall", "ironcrosslt2", ""},       // "lt" is a light
		{"gothic_light", "ironcrosslt2", ""},      // and so is its set
		{"sfx", "metalbridge06_bounce", ""},
		{"skies", "stonesky", ""},
		{"liquids", "lavarock", ""},
		{"base_wall", "main_q3abanner", ""},
		{"base_wall", "metal_logo", ""},
		{"base_light", "light1blue.blend", ""},
		{"base_wall", "chrome_env", ""},
		{"gothic_trim", "metalsupport4", ""},
		{"oquartz", "s128aa", ""}, // no material named
	} {
		if got := classifyTexture(c.set, c.name); got != c.want {
			t.Errorf("%s/%s: %q, want %q", c.set, c.name, got, c.want)
		}
	}
}

func TestTextureGroups(t *testing.T) {
	flat := func(name string, v uint8) *texture { // flat pictures: only names can join them
		p := newPlane(3, 8, 8)
		for i := range p.pix {
			p.pix[i] = v
		}
		return &texture{name: name, material: Metal, img: p}
	}
	ts := []*texture{flat("blocks17", 1), flat("blocks17e", 2), flat("blocks17floor2", 3), flat("blocks18", 4),
		flat("pitted_rust3", 5), flat("pitted_rust3_black", 6), flat("pitted_rust", 7), flat("dirt", 8), flat("dirty_pewter", 9),
		flat("e8crete03", 10), flat("e8crete03_blue", 11), flat("e8cretefloor01b", 12), flat("stone", 13), flat("stone_tile", 14),
		flat("concrete", 15), flat("concrete_dark", 16), flat("concrete03", 17)}
	groupTextures(ts)
	group := map[string]string{}
	for _, x := range ts {
		group[x.name] = x.group
	}
	for _, same := range [][2]string{{"blocks17", "blocks17e"}, {"blocks17", "blocks17floor2"}, {"pitted_rust3", "pitted_rust3_black"},
		{"pitted_rust", "pitted_rust3"}, {"e8crete03", "e8crete03_blue"}, {"concrete", "concrete_dark"}} {
		if group[same[0]] != group[same[1]] {
			t.Errorf("%s and %s are in groups %s and %s", same[0], same[1], group[same[0]], group[same[1]])
		}
	}
	for _, apart := range [][2]string{{"blocks17", "blocks18"}, {"dirt", "dirty_pewter"}, {"e8crete03", "e8cretefloor01b"}, {"stone", "stone_tile"}, {"concrete", "concrete03"}} {
		if group[apart[0]] == group[apart[1]] {
			t.Errorf("%s and %s share group %s", apart[0], apart[1], group[apart[0]])
		}
	}
	// The same picture under unrelated names is one group.
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := &texture{name: "alpha", material: Stone, img: newPlane(3, 16, 16)}, &texture{name: "omega", material: Stone, img: newPlane(3, 32, 32)}
	for y := 0; y < 16; y++ {
		for x := 0; x < 16; x++ {
			v := uint8(rng.IntN(256))
			for c := 0; c < 3; c++ {
				a.img.pix[c*256+y*16+x] = v
				for dy := 0; dy < 2; dy++ { // b is a twice as large copy, recoloured
					for dx := 0; dx < 2; dx++ {
						b.img.pix[c*1024+(2*y+dy)*32+2*x+dx] = v/2 + uint8(40*c)
					}
				}
			}
		}
	}
	groupTextures([]*texture{a, b})
	if a.group != b.group {
		t.Fatalf("a rescaled, recoloured copy is in group %s, the original in %s", b.group, a.group)
	}
}

// The real package, when it is in the default cache: the three datasets build, and the
// classification and the split hold on it. Logs the groups per material and split.
func TestTextureRealPackage(t *testing.T) {
	cache := DefaultTextureCache()
	deb := CachedTexturePackage(cache)
	if deb == "" {
		t.Skipf("no %s_*.deb in %s; get it with `wkd data --name %s` (runs apt-get download there) or `cd %s && apt-get download %s`",
			TexturePackage, cache, Sketch2Texture, cache, TexturePackage)
	}
	out := t.TempDir()
	for _, name := range []string{Sketch2Texture, Stone2Metal, TextureClasses} {
		cfg := DefaultTextureConfig(name, deb, cache, out)
		cfg.Train, cfg.Val, cfg.Test = 8, 2, 4
		res := mustBuildTextures(t, cfg)
		s := readSplits(t, res.Dir)
		side := map[string]string{}
		count := map[string]map[Material]map[string]bool{"train": {}, "test": {}}
		for _, l := range []struct {
			name   string
			groups []splitGroup
		}{{"train", s.Train}, {"test", s.Test}} {
			for _, g := range l.groups {
				for _, f := range g.Files {
					if other := side[g.Group]; other != "" && other != l.name {
						t.Fatalf("%s: group %s in both splits", name, g.Group)
					}
					side[g.Group] = l.name
					lower := strings.ToLower(f.File)
					for _, bad := range []string{"/sfx", "/skies/", "skin6thrust", "ironcrosslt", "/liquids/", "logo", "banner", "portal", "jumppad"} {
						if strings.Contains(lower, bad) {
							t.Errorf("%s: %s is used", name, f.File)
						}
					}
					if strings.HasSuffix(lower, "/e7panelwood.jpg") && f.Material != Wood {
						t.Errorf("%s: %s is %s", name, f.File, f.Material)
					}
					if count[l.name][f.Material] == nil {
						count[l.name][f.Material] = map[string]bool{}
					}
					count[l.name][f.Material][g.Group] = true
				}
			}
		}
		var line []string
		for _, m := range allMaterials() {
			line = append(line, fmt.Sprintf("%s %d/%d", m, len(count["train"][m]), len(count["test"][m])))
		}
		t.Logf("%s: groups train/test: %s", name, strings.Join(line, ", "))
		if name == TextureClasses {
			classes, _ := os.ReadDir(filepath.Join(res.Dir, "test"))
			if len(classes) < 5 {
				t.Errorf("texture-classes has %d classes, want 5 or more", len(classes))
			}
		}
	}
}
