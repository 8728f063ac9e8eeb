package metrics

import (
	"archive/zip"
	"fmt"
	"image"
	_ "image/jpeg"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wkd/data"
	"wkd/internal/torchnets"
	"wkd/internal/torchref"
	"wkd/models"
	"wkd/ops"
)

// texturePhotos returns real photographs from the texture package in wkd's cache: per wanted
// size (w, h), up to n JPEGs of exactly that size, in [-1, 1].
func texturePhotos(t *testing.T, sizes [][2]int, n int) [][]Image {
	t.Helper()
	cache := data.DefaultTextureCache()
	deb := data.CachedTexturePackage(cache)
	if deb == "" {
		t.Fatalf("the Inception parity runs on real photographs: no %s_*.deb in %s; get it with `bash scripts/deps.sh` or `wkd data --name %s`", data.TexturePackage, cache, data.Sketch2Texture)
	}
	tf, err := data.UnpackTextures(deb, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(tf.PK3)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := make([][]Image, len(sizes))
	for _, f := range zr.File {
		if !strings.HasSuffix(strings.ToLower(f.Name), ".jpg") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := image.Decode(rc)
		rc.Close()
		if err != nil {
			continue
		}
		b := img.Bounds()
		k := slices.Index(sizes, [2]int{b.Dx(), b.Dy()})
		if k < 0 || len(out[k]) == n {
			continue
		}
		im := Image{C: 3, H: b.Dy(), W: b.Dx(), Pix: make([]float32, 3*b.Dx()*b.Dy())}
		plane := b.Dx() * b.Dy()
		for y := range b.Dy() {
			for x := range b.Dx() {
				r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				for c, v := range []uint32{r, g, bl} {
					im.Pix[c*plane+y*b.Dx()+x] = float32(v>>8)/127.5 - 1
				}
			}
		}
		out[k] = append(out[k], im)
	}
	for k, s := range sizes {
		if len(out[k]) == 0 {
			t.Fatalf("no %dx%d JPEG in %s", s[0], s[1], tf.PK3)
		}
	}
	return out
}

// TestInceptionParity: wkd's FID Inception against torchvision's Inception3 with the FID
// blocks (internal/torchref/inception.py) on random weights saved by torch.save in the zip
// and the legacy format, on real photographs of several sizes: 2048-d pool3 features and the
// 64, 192 and 768-d block features within 1e-4 relative. The weights also go through wkd's
// safetensors and back.
func TestInceptionParity(t *testing.T) {
	dir := t.TempDir()
	groups := texturePhotos(t, [][2]int{{64, 64}, {128, 128}, {256, 256}, {128, 64}}, 3)
	inputs := map[string]torchref.Array{}
	for k, g := range groups {
		x := batchOf(g)
		inputs[fmt.Sprintf("x%d", k)] = torchref.Of(x.Data, x.Shape...)
	}
	zipPth, legacyPth := filepath.Join(dir, "zip.pth"), filepath.Join(dir, "legacy.pth")
	want := torchref.Run(t, torchnets.InceptionPy+fmt.Sprintf(`
net = randomize(fid_inception(), 3)
torch.save(net.state_dict(), %q)
torch.save(net.state_dict(), %q, _use_new_zipfile_serialization=False)
k = 0
while 'x%%d' %% k in I:
    O['f%%d' %% k] = fid_features(net, I['x%%d' %% k])
    k += 1
for dims in (64, 192, 768):
    O['d%%d' %% dims] = fid_features(net, I['x0'], dims)
`, zipPth, legacyPth), inputs)

	zipNet, err := models.LoadInception(zipPth)
	if err != nil {
		t.Fatal(err)
	}
	legacyNet, err := models.LoadInception(legacyPth)
	if err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "w.safetensors")
	if err := zipNet.Save(st, nil); err != nil {
		t.Fatal(err)
	}
	stNet, err := models.LoadInception(st)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]float32{}
	for k, g := range groups {
		f := InceptionFeatures(zipNet, g, 2048, 2, nil)
		got[fmt.Sprintf("f%d", k)] = flatRows(f)
		for name, other := range map[string]*models.Inception{"legacy .pth": legacyNet, "safetensors": stNet} {
			if o := flatRows(InceptionFeatures(other, g, 2048, 8, nil)); !slices.Equal(o, got[fmt.Sprintf("f%d", k)]) {
				t.Errorf("%dx%d: features from the %s weights differ from the zip .pth's", g[0].W, g[0].H, name)
			}
		}
	}
	for _, dims := range []int{64, 192, 768} {
		got[fmt.Sprintf("d%d", dims)] = flatRows(InceptionFeatures(zipNet, groups[0], dims, 8, nil))
	}
	worst := torchref.Compare(t, 1e-4, got, want)
	t.Logf("FID Inception features vs torchvision on %d photographs (64x64, 128x128, 256x256, 128 wide x 64 high; 64, 192, 768, 2048-d): worst relative error %.2g", 3*len(groups), worst)
}

// batchOf stacks photographs as the FID tools read them: 8-bit values over 255.
func batchOf(images []Image) *ops.Tensor {
	im := images[0]
	x := ops.New(len(images), 3, im.H, im.W)
	for i, m := range images {
		for j, v := range m.Pix {
			x.Data[i*len(m.Pix)+j] = float32(math.Round(float64(v+1)*127.5)) / 255 // the file's 8-bit value
		}
	}
	return x
}

func flatRows(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func TestInceptionWarmForwardAllocatesNothing(t *testing.T) {
	net := models.NewInception()
	net.InitRandom(1)
	x := ops.New(2, 3, 40, 48)
	out := [][]float32{make([]float32, 2048), make([]float32, 2048)}
	net.Features(x, 2048, out)
	if a := testing.AllocsPerRun(2, func() { net.Features(x, 2048, out) }); a != 0 {
		t.Errorf("a warm forward allocates %v times, want 0", a)
	}
}

// TestTo8BitIsTensor2im: generated values become the 8-bit levels the reference's tensor2im
// saves (truncation, clamped), and values read from 8-bit files keep their level.
func TestTo8BitIsTensor2im(t *testing.T) {
	for _, c := range []struct {
		v    float32
		want int
	}{{-1, 0}, {1, 255}, {-2, 0}, {3, 255}, {0, 127}, {(100.7)/127.5 - 1, 100}, {(100.2)/127.5 - 1, 100}, {(254.99)/127.5 - 1, 254}} {
		if got := to8Bit(c.v); got != float32(c.want)/255 {
			t.Errorf("to8Bit(%v) = %v/255, want %d/255", c.v, got*255, c.want)
		}
	}
	for k := range 256 {
		// As ReadImage and the data loader (torchvision's steps) give an 8-bit value.
		for _, v := range []float32{float32(k)/127.5 - 1, (float32(k)/255 - 0.5) / 0.5} {
			if got := to8Bit(v); got != float32(k)/255 {
				t.Fatalf("8-bit level %d (%v) read back as %v/255", k, v, got*255)
			}
		}
	}
}
