package trainer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wkd/internal/safetensors"
	"wkd/models"
)

// writeAligned makes a tiny aligned dataset: n images of A|B side by side, each side size².
func writeAligned(t *testing.T, n, size int) string {
	t.Helper()
	root := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	for _, phase := range []string{"train", "test"} {
		dir := filepath.Join(root, phase)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			img := image.NewRGBA(image.Rect(0, 0, 2*size, size))
			for y := range size {
				for x := range 2 * size {
					v := uint8(r.IntN(256))
					img.Set(x, y, color.RGBA{v, uint8(x * 8), uint8(y * 8), 255})
				}
			}
			writePNG(t, filepath.Join(dir, fmt.Sprintf("%03d.png", i)), img)
		}
	}
	return root
}

// writeUnaligned makes trainA/trainB/testA/testB folders of n random size² images.
func writeUnaligned(t *testing.T, n, size int) string {
	t.Helper()
	root := t.TempDir()
	r := rand.New(rand.NewPCG(7, 8))
	for _, sub := range []string{"trainA", "trainB", "testA", "testB"} {
		dir := filepath.Join(root, sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			img := image.NewRGBA(image.Rect(0, 0, size, size))
			for y := range size {
				for x := range size {
					img.Set(x, y, color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(x * 8), 255})
				}
			}
			writePNG(t, filepath.Join(dir, fmt.Sprintf("%03d.png", i)), img)
		}
	}
	return root
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// tinyPix2Pix is a pix2pix recipe small enough to run a few steps in a test: U-Net with
// batch norm and dropout (so the random stream and running statistics are exercised).
func tinyPix2Pix(data, dir string) Config {
	c := DefaultPix2Pix()
	c.Data, c.Dir = data, dir
	c.G = models.Spec{Kind: models.UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Batch, Dropout: true}
	c.D = models.Spec{Kind: models.PatchGAN, InputNC: 6, NDF: 4, Norm: models.Batch}
	c.LoadSize, c.CropSize = 36, 32
	c.Epochs, c.EpochsDecay = 2, 1
	c.BatchSize = 2
	c.CheckpointEvery, c.LogEvery = 3, 1
	return c
}

func tinyCycleGAN(data, dir string) Config {
	c := DefaultCycleGAN()
	c.Data, c.Dir = data, dir
	c.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance}
	// Two layers: a 70x70 PatchGAN has no output left at 16x16.
	c.D = models.Spec{Kind: models.NLayers, NLayers: 2, InputNC: 3, NDF: 4, Norm: models.Instance}
	c.LoadSize, c.CropSize = 18, 16
	c.Epochs, c.EpochsDecay = 1, 1
	c.PoolSize = 3 // small, so the pool fills and starts swapping within the test
	c.CheckpointEvery, c.LogEvery = 3, 1
	return c
}

func runFor(t *testing.T, cfg Config, steps int, resume bool) *Trainer {
	t.Helper()
	cfg.MaxSteps = steps
	tr, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if resume {
		if err := tr.Resume(""); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tr
}

// sameWeights fails unless every network of a and b is equal bit for bit.
func sameWeights(t *testing.T, a, b *Trainer) {
	t.Helper()
	na, nb := a.nets(), b.nets()
	for i := range na {
		sa, sb := na[i].net.State(), nb[i].net.State()
		for j := range sa {
			for k := range sa[j].Data {
				if sa[j].Data[k] != sb[j].Data[k] {
					t.Fatalf("%s/%s[%d]: %v vs %v: the resumed run differs", na[i].name, sa[j].Name, k, sa[j].Data[k], sb[j].Data[k])
				}
			}
		}
	}
}

func TestResumeIsBitExact(t *testing.T) {
	cases := map[string]func(string, string) Config{"pix2pix": tinyPix2Pix, "cyclegan": tinyCycleGAN}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			var data string
			if name == "pix2pix" {
				data = writeAligned(t, 6, 32)
			} else {
				data = writeUnaligned(t, 5, 16)
			}
			// Uninterrupted: 7 steps crosses an epoch boundary (3 or 5 steps per epoch).
			whole := runFor(t, mk(data, t.TempDir()), 7, false)
			// Interrupted after 4 steps, then resumed to 7 in a new process-like trainer.
			dir := t.TempDir()
			runFor(t, mk(data, dir), 4, false)
			resumed := runFor(t, mk(data, dir), 7, true)
			if resumed.Step() != 7 {
				t.Fatalf("resumed run ended at step %d, want 7", resumed.Step())
			}
			sameWeights(t, whole, resumed)
		})
	}
}

func TestDamagedCheckpointIsRefused(t *testing.T) {
	data := writeAligned(t, 6, 32)
	dir := t.TempDir()
	cfg := tinyPix2Pix(data, dir)
	cfg.CheckpointEvery = 2
	runFor(t, cfg, 4, false) // checkpoints at steps 2 and 4
	all, _ := listCheckpoints(dir)
	if len(all) != 2 {
		t.Fatalf("checkpoints %v, want 2 kept", all)
	}
	newest := all[1]
	good, _ := os.ReadFile(newest)

	damage := map[string][]byte{
		"truncated": good[:len(good)/2],
		"altered": func() []byte {
			b := append([]byte(nil), good...)
			b[len(b)-9] ^= 0x40 // a bit of the last tensor's data
			return b
		}(),
	}
	for name, b := range damage {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(newest, b, 0o644); err != nil {
				t.Fatal(err)
			}
			tr, err := New(cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			err = tr.Resume("")
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("Resume from a %s checkpoint: err = %v, want ErrCheckpoint", name, err)
			}
			if !strings.Contains(err.Error(), filepath.Base(newest)) || !strings.Contains(err.Error(), filepath.Base(all[0])) {
				t.Errorf("error should name the damaged file and the previous one: %v", err)
			}
			if tr.Step() != 0 {
				t.Errorf("a refused checkpoint changed the trainer (step %d)", tr.Step())
			}
			// The previous checkpoint is intact and loads.
			if err := tr.Resume(all[0]); err != nil {
				t.Fatalf("previous checkpoint: %v", err)
			}
			if tr.Step() != 2 {
				t.Errorf("resumed at step %d, want 2", tr.Step())
			}
		})
	}
}

func TestDistillationRunsAndTeacherIsFrozen(t *testing.T) {
	data := writeAligned(t, 4, 32)
	teacherDir := t.TempDir()
	runFor(t, tinyPix2Pix(data, teacherDir), 2, false)
	for _, kd := range []KD{KDWavelet, KDPixel, KDNone} {
		t.Run(string(kd), func(t *testing.T) {
			cfg := tinyPix2Pix(data, t.TempDir())
			cfg.Teacher, cfg.KD, cfg.Alpha = teacherDir, kd, 10
			cfg.G.NGF = 2
			tr := runFor(t, cfg, 2, false)
			before, _ := os.ReadFile(filepath.Join(teacherDir, "G.safetensors"))
			if tr.teacherA == nil {
				t.Fatal("no teacher loaded")
			}
			for _, p := range tr.teacherA.Params() {
				if p.RequiresGrad() || p.Grad != nil {
					t.Fatalf("teacher parameter %s takes gradients", p.Name)
				}
			}
			after, _ := os.ReadFile(filepath.Join(teacherDir, "G.safetensors"))
			if string(before) != string(after) {
				t.Error("the teacher's weights file changed")
			}
		})
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	base := tinyPix2Pix("data", "out")
	cases := []struct {
		name, want string
		mod        func(*Config)
	}{
		{"batch", "--batch-size", func(c *Config) { c.BatchSize = 0 }},
		{"lr", "--lr", func(c *Config) { c.LR = -1 }},
		{"lr nan", "--lr", func(c *Config) { c.LR = float32(math.NaN()) }},
		{"alpha inf", "--alpha", func(c *Config) { c.Teacher, c.KD, c.Alpha = "t", KDWavelet, float32(math.Inf(1)) }},
		{"gan", "--gan-mode", func(c *Config) { c.GANMode = "wgan" }},
		{"kd without teacher", "--teacher", func(c *Config) { c.KD = KDWavelet }},
		{"kd kind", "--kd", func(c *Config) { c.Teacher, c.KD = "t", "feature" }},
		{"levels", "--levels", func(c *Config) { c.Teacher, c.KD, c.Levels = "t", KDWavelet, 0 }},
		{"kd loss", "--kd-loss", func(c *Config) { c.Teacher, c.KD, c.KDLoss = "t", KDWavelet, "huber" }},
		{"crop vs U-Net", "--crop-size 33", func(c *Config) { c.CropSize, c.LoadSize = 33, 36 }},
		{"crop vs PatchGAN", "--crop-size 8", func(c *Config) {
			c.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance}
			c.CropSize, c.LoadSize = 8, 8
		}},
		{"crop vs teacher", "--crop-size 36", func(c *Config) {
			c.G = models.Spec{Kind: models.ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance}
			c.Teacher, c.KD, c.TeacherG, c.CropSize, c.LoadSize = "t", KDWavelet, c.G, 36, 36
			c.TeacherG = models.Spec{Kind: models.UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance}
		}},
		{"epochs", "--epochs", func(c *Config) { c.Epochs, c.EpochsDecay = 0, 0 }},
		{"data", "--data", func(c *Config) { c.Data = "" }},
		{"threads", "--threads -3", func(c *Config) { c.Threads = -3 }},
		{"negative lambda", "--lambda-l1 -5", func(c *Config) { c.LambdaL1 = -5 }},
		{"huge batch", "--batch-size 1000000", func(c *Config) { c.BatchSize = 1000000 }},
		{"huge load", "--load-size 100000", func(c *Config) { c.LoadSize = 100000 }},
		{"huge batch of images", "--batch-size 4096 of 8192x8192", func(c *Config) { c.BatchSize, c.LoadSize, c.CropSize = 4096, 8192, 8192 }},
		{"negative steps", "--max-steps -1", func(c *Config) { c.MaxSteps = -1 }},
		{"width beyond bounds", "--netG", func(c *Config) { c.G.NGF = 1 << 31 }},
		{"too many parameters", "--ngf", func(c *Config) {
			c.G = models.Spec{Kind: models.ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 2048, Norm: models.Instance}
		}},
		{"discriminator as G", "--netG basic is a discriminator", func(c *Config) { c.G.Kind = models.PatchGAN }},
		{"teacher spec", "--teacher-netG", func(c *Config) {
			c.Teacher, c.KD = "t", KDWavelet
			c.TeacherG = models.Spec{Kind: models.UNet, NumDowns: 3, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance}
		}},
	}
	for _, tc := range cases {
		c := base
		tc.mod(&c)
		err := c.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrConfig naming %s", tc.name, err, tc.want)
		}
	}
}

func TestMissingDatasetNamesTheFolder(t *testing.T) {
	cfg := tinyPix2Pix(filepath.Join(t.TempDir(), "nowhere"), t.TempDir())
	_, err := New(cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("err = %v, want one naming the missing folder", err)
	}
}

func TestLRSchedule(t *testing.T) {
	// 2 constant epochs then 3 decaying: factors 1, 1, 0.75, 0.5, 0.25.
	want := []float32{1, 1, 0.75, 0.5, 0.25}
	for e, w := range want {
		if got := lrFactor(e, 2, 3); got != w {
			t.Errorf("epoch %d: factor %v, want %v", e, got, w)
		}
	}
}

func TestInterruptWritesACheckpoint(t *testing.T) {
	data := writeAligned(t, 6, 32)
	// Only a cancellation without a cause of its own is an interrupt: a cluster member's
	// view change (ErrWorldChanged, or its own error) is not.
	for _, cause := range []error{context.Canceled, ErrWorldChanged, errors.New("a view ended")} {
		dir := t.TempDir()
		cfg := tinyPix2Pix(data, dir)
		cfg.CheckpointEvery = 1000
		ctx, cancel := context.WithCancelCause(context.Background())
		tr, err := New(cfg, io.Discard, WithObserver(func(r StepReport) {
			if r.Step == 2 {
				cancel(cause)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if err := tr.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("cause %v: Run = %v, want context.Canceled", cause, err)
		}
		all, _ := listCheckpoints(dir)
		wantCkpt := cause == context.Canceled
		if got := len(all) == 1 && strings.HasSuffix(all[0], "step-00000002.safetensors"); got != wantCkpt {
			t.Errorf("cause %v: checkpoints %v, want one at step 2: %v", cause, all, wantCkpt)
		}
	}
}

// TestRefusedStateChangesNothing: a state whose discriminator optimizer is damaged is refused
// before the generator's optimizer (checked and loaded first) is touched.
func TestRefusedStateChangesNothing(t *testing.T) {
	data := writeAligned(t, 6, 16)
	a := runFor(t, tinyPix2Pix(data, filepath.Join(t.TempDir(), "a")), 2, false)
	b := runFor(t, tinyPix2Pix(data, filepath.Join(t.TempDir(), "b")), 4, false)
	tensors, meta, err := b.state()
	if err != nil {
		t.Fatal(err)
	}
	dropped := ""
	for name := range tensors {
		if strings.HasPrefix(name, "optD/") && strings.Contains(name, "/exp_avg_sq/") {
			dropped = name
			delete(tensors, name)
			break
		}
	}
	if dropped == "" {
		t.Fatal("the state has no exp_avg_sq entry of optD")
	}
	before := a.optG.State()
	stepBefore := a.step
	err = a.applyState("test state", tensors, meta)
	if err == nil || !strings.Contains(err.Error(), "optD") {
		t.Fatalf("a state without %s: error %v, want one naming optD", dropped, err)
	}
	after := a.optG.State()
	for k, v := range before {
		if !slices.Equal(v, after[k]) {
			t.Fatalf("optG %s changed although the state was refused", k)
		}
	}
	if a.step != stepBefore {
		t.Fatalf("step %d after a refused state, was %d", a.step, stepBefore)
	}
}

// TestPoolOfAnotherCropSizeIsRefused: a CycleGAN state whose pooled images are not this run's
// crop size is refused naming the flag, instead of failing at the first pool swap.
func TestPoolOfAnotherCropSizeIsRefused(t *testing.T) {
	data := writeUnaligned(t, 6, 20)
	a := runFor(t, tinyCycleGAN(data, filepath.Join(t.TempDir(), "a")), 4, false)
	if a.poolA.Len() == 0 {
		t.Fatal("the pool is empty after 4 steps: the test checks nothing")
	}
	cfg := tinyCycleGAN(data, filepath.Join(t.TempDir(), "b"))
	cfg.LoadSize, cfg.CropSize = 14, 12
	b, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	tensors, meta, err := a.state()
	if err != nil {
		t.Fatal(err)
	}
	err = b.applyState("test state", tensors, meta)
	if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "--crop-size") {
		t.Fatalf("pool images of 16x16 into a 12x12 run: error %v, want ErrCheckpoint naming --crop-size", err)
	}
	if b.step != 0 || b.poolA.Len() != 0 {
		t.Fatalf("a refused state changed the run: step %d, %d pooled images", b.step, b.poolA.Len())
	}
}

// TestTeacherWeightsFileNamesItsArchitecture: a teacher given as a weights file that records its
// architecture (every file wkd writes) needs no --teacher-netG, and its generator is the one
// recorded; a file without the record is refused naming the flags and wkd convert; a recorded
// teacher of other channels is refused naming --input-nc.
func TestTeacherWeightsFileNamesItsArchitecture(t *testing.T) {
	data := writeAligned(t, 4, 32)
	teacherDir := t.TempDir()
	tc := tinyPix2Pix(data, teacherDir)
	tc.G.NGF = 6
	runFor(t, tc, 1, false)
	file := filepath.Join(teacherDir, "G.safetensors")
	cfg := tinyPix2Pix(data, t.TempDir())
	cfg.Teacher, cfg.KD, cfg.Alpha = file, KDWavelet, 10
	cfg.G.NGF = 2
	tr := runFor(t, cfg, 1, false)
	if got := tr.teacherA.Spec(); got != tc.G {
		t.Errorf("teacher built as %v, the file records %v", got, tc.G)
	}

	tensors, _, err := safetensors.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), "bare.safetensors")
	safetensors.WriteFile(bare, tensors, nil)
	cfg.Teacher, cfg.Dir = bare, t.TempDir()
	if _, err := New(cfg, io.Discard); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--teacher-netG") || !strings.Contains(err.Error(), "wkd convert") {
		t.Errorf("a file without its architecture: err = %v, want ErrConfig naming --teacher-netG and wkd convert", err)
	}
	gray := cfg
	gray.Teacher, gray.Dir = file, t.TempDir()
	gray.G.InputNC, gray.D.InputNC = 1, 4
	if _, err := New(gray, io.Discard); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--input-nc") {
		t.Errorf("a teacher of other channels: err = %v, want ErrConfig naming --input-nc", err)
	}
}

// TestDirectionAndPreprocessReachTheData: --direction BtoA makes the dataset's B side the
// input, and --preprocess crop takes the crop from the image as it is (no resize).
func TestDirectionAndPreprocessReachTheData(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "train")
	os.MkdirAll(dir, 0o755)
	img := image.NewRGBA(image.Rect(0, 0, 64, 32))
	for y := range 32 {
		for x := range 64 {
			v := uint8(0) // A (left) black, B (right) white
			if x >= 32 {
				v = 255
			}
			img.Set(x, y, color.RGBA{v, v, v, 255})
		}
	}
	writePNG(t, filepath.Join(dir, "000.png"), img)
	for _, btoa := range []bool{false, true} {
		cfg := tinyPix2Pix(root, t.TempDir())
		cfg.BtoA, cfg.Preprocess = btoa, "crop"
		cfg.LoadSize, cfg.CropSize = 32, 32
		tr, err := New(cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		s, err := tr.train.Load(1, 0, 0)
		tr.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := float32(-1)
		if btoa {
			want = 1
		}
		if s.A[0] != want || s.B[0] != -want {
			t.Errorf("BtoA %v: input starts %v, target %v; want %v and %v", btoa, s.A[0], s.B[0], want, -want)
		}
	}
	bad := tinyPix2Pix(root, t.TempDir())
	bad.Preprocess = "scale_width"
	if err := bad.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--preprocess scale_width") {
		t.Errorf("--preprocess scale_width: err = %v", err)
	}
}

// TestCorruptImageKeepsTheSteps: an image that cannot be decoded, met in the middle of an
// epoch, stops the run with an error naming it and --resume, after a checkpoint of the last
// completed step.
func TestCorruptImageKeepsTheSteps(t *testing.T) {
	data := writeAligned(t, 8, 32)
	bad := filepath.Join(data, "train", "005.png")
	b, _ := os.ReadFile(bad)
	os.WriteFile(bad, b[:len(b)/2], 0o644)
	cfg := tinyPix2Pix(data, t.TempDir())
	cfg.BatchSize, cfg.CheckpointEvery = 1, 1000
	tr, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	err = tr.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "005.png") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("err = %v, want one naming 005.png and --resume", err)
	}
	if tr.Step() == 0 {
		t.Fatal("premise: the corrupt image came first; pick another")
	}
	ckpt, _ := LatestCheckpoint(cfg.Dir)
	if filepath.Base(ckpt) != fmt.Sprintf("step-%08d.safetensors", tr.Step()) {
		t.Errorf("newest checkpoint %q, want one of step %d", ckpt, tr.Step())
	}
}
