//go:build cuda || cudaemu

package main

import (
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"wkd/models"
	"wkd/ops"
	"wkd/ops/cuda"
)

// wkd translate --device cuda writes the images --device cpu writes, up to one level of 255
// where a value sits on a rounding boundary, for images of more than one size.
func TestDeviceTranslateMatchesCPU(t *testing.T) {
	cuda.SetEmulatorBlockWidth(1)
	t.Cleanup(func() { cuda.SetEmulatorBlockWidth(256) })
	dir := t.TempDir()
	spec := models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance}
	g, err := models.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	models.Init(g, ops.NewRNG(4))
	weights := filepath.Join(dir, "g.safetensors")
	if err := models.Save(weights, g, nil); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	// Two images of one size, then a larger one (translated in name order): the arena's
	// slots, sized by the first, must grow on the device as on the host.
	sizes := map[string]int{"a.png": 16, "b.png": 16, "c.png": 24}
	names := []string{"a.png", "b.png", "c.png"}
	for _, name := range names {
		img := image.NewRGBA(image.Rect(0, 0, sizes[name], sizes[name]))
		for i := range img.Pix {
			img.Pix[i] = uint8(r.IntN(256))
		}
		f, err := os.Create(filepath.Join(in, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	outs := map[string]string{}
	for _, device := range []string{"cpu", "cuda"} {
		outs[device] = filepath.Join(dir, device)
		err := runTranslate([]string{"--device", device, "--weights", weights, "--netG", "resnet",
			"--n-blocks", "1", "--ngf", "4", "--norm", "instance", "--input", in, "--out", outs[device]})
		if err != nil {
			t.Fatalf("translate --device %s: %v", device, err)
		}
	}
	worst := 0
	for _, name := range names {
		a, b := readPNG(t, filepath.Join(outs["cpu"], name)), readPNG(t, filepath.Join(outs["cuda"], name))
		if a.Bounds() != b.Bounds() || b.Bounds().Dx() != sizes[name] {
			t.Fatalf("%s (%d pixels wide): %v on cpu, %v on cuda", name, sizes[name], a.Bounds(), b.Bounds())
		}
		for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
			for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
				ca, cb := color.RGBAModel.Convert(a.At(x, y)).(color.RGBA), color.RGBAModel.Convert(b.At(x, y)).(color.RGBA)
				for _, d := range []int{int(ca.R) - int(cb.R), int(ca.G) - int(cb.G), int(ca.B) - int(cb.B)} {
					worst = max(worst, d, -d)
				}
			}
		}
	}
	t.Logf("worst pixel difference: %d/255", worst)
	if worst > 1 {
		t.Errorf("translated images differ by up to %d/255 between cuda and cpu", worst)
	}
}

func readPNG(t *testing.T, path string) image.Image {
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
