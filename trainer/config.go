package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"wkd/data"
	"wkd/internal/atomicfile"
	"wkd/models"
)

// Errors of this package.
var (
	ErrConfig     = errors.New("trainer: bad configuration")
	ErrCheckpoint = errors.New("trainer: bad checkpoint")
	ErrDiverged   = errors.New("trainer: loss is not finite")
	// ErrStepAborted wraps a synchronization failure: the step was rolled back, and the run
	// can continue from Step() once the world is settled (SetWorld, maybe LoadStateBytes).
	ErrStepAborted = errors.New("trainer: step aborted")
	// ErrDevice wraps a fault of the --device: its errors are sticky (every later launch and
	// copy does nothing), so the run stops without sending gradients or writing a checkpoint;
	// resume from the last checkpoint in a new process.
	ErrDevice = errors.New("trainer: the device failed")
	// ErrWorldChanged is a cancellation cause a cluster member may give Run's context when the
	// view ends under it. Run writes the checkpoint of an interrupt only when its context is
	// cancelled without a cause of its own (context.Canceled or DeadlineExceeded); with any
	// other cause, such as this one, it stops without.
	ErrWorldChanged = errors.New("trainer: the world changed")
)

// Task is the image-to-image problem being trained.
type Task string

// The tasks.
const (
	Pix2Pix  Task = "pix2pix"
	CycleGAN Task = "cyclegan"
)

// Config is one training or distillation run. Presets: DefaultPix2Pix, DefaultCycleGAN.
type Config struct {
	// Task is pix2pix (paired A->B) or cyclegan (unpaired A<->B).
	Task Task `json:"task"`
	// Data is the dataset folder (aligned: train/ test/; unaligned: trainA/ trainB/ ...).
	Data string `json:"data"`
	// Dir is the run folder: config, log, checkpoints and final weights.
	Dir string `json:"dir"`

	// G is the generator (the student when distilling), D the discriminator.
	G models.Spec `json:"-"`
	D models.Spec `json:"-"`

	// GANMode: vanilla (pix2pix) or lsgan (CycleGAN).
	GANMode GANMode `json:"gan_mode"`
	// LambdaL1 weighs pix2pix's L1 to the target (100).
	LambdaL1 float32 `json:"lambda_l1"`
	// LambdaA and LambdaB weigh CycleGAN's cycle losses (10); LambdaIdentity scales the
	// identity loss relative to them (0.5).
	LambdaA        float32 `json:"lambda_A"`
	LambdaB        float32 `json:"lambda_B"`
	LambdaIdentity float32 `json:"lambda_identity"`
	// PoolSize is CycleGAN's image history (50); 0 turns it off.
	PoolSize int `json:"pool_size"`

	// LR, Beta1: Adam's learning rate (2e-4) and first moment decay (0.5).
	LR    float32 `json:"lr"`
	Beta1 float32 `json:"beta1"`
	// Epochs at the initial rate, then EpochsDecay with the rate falling linearly to 0.
	Epochs      int `json:"n_epochs"`
	EpochsDecay int `json:"n_epochs_decay"`
	// BatchSize is the global batch: summed over all nodes of a cluster.
	BatchSize int `json:"batch_size"`
	// Seed fixes initialization, data order, augmentation, dropout and the image pool.
	Seed uint64 `json:"seed"`
	// LoadSize and CropSize: images are resized to LoadSize then randomly cropped to
	// CropSize (train only). NoFlip turns off random horizontal flips.
	LoadSize int  `json:"load_size"`
	CropSize int  `json:"crop_size"`
	NoFlip   bool `json:"no_flip"`
	// BtoA swaps the sides of an aligned dataset, or the domains of an unaligned one (the
	// reference's --direction BtoA).
	BtoA bool `json:"btoa,omitempty"`
	// Preprocess is the resize and crop recipe (--preprocess): resize_and_crop (default),
	// crop or scale_width_and_crop; recipes that keep each image's own size are refused.
	Preprocess string `json:"preprocess,omitempty"`
	// MaxSamples limits the training set (0: all).
	MaxSamples int `json:"max_dataset_size"`

	// CheckpointEvery writes a checkpoint every this many steps (and always at the end).
	CheckpointEvery int `json:"checkpoint_every"`
	// KeepCheckpoints is how many recent checkpoints are kept (at least 1).
	KeepCheckpoints int `json:"keep_checkpoints"`
	// LogEvery logs losses every this many steps.
	LogEvery int `json:"log_every"`
	// MaxSteps stops the run after this many steps in all (0: run every epoch); for tests and
	// for interrupting a run at a known point.
	MaxSteps int `json:"max_steps"`

	// Teacher, when set, makes this a distillation: a checkpoint or weights file of the
	// teacher generator(s), frozen.
	Teacher string `json:"teacher,omitempty"`
	// TeacherG is the teacher's architecture (read from its run's config.json when empty).
	TeacherG models.Spec `json:"-"`
	// KD: wavelet (WKD), pixel, or none (a student trained alone, same recipe).
	KD KD `json:"kd,omitempty"`
	// Alpha weighs the KD term against the task loss. With pix2pix's L1 at lambda 100, WKD
	// needs alpha in the tens to hundreds to matter; the log reports the KD share of the
	// generator loss to help set it.
	Alpha float32 `json:"alpha,omitempty"`
	// Levels of the Haar DWT (3). A side that is odd at some level gets one zero row or
	// column at its end there, as pytorch_wavelets' mode 'zero' does, so any crop size works.
	Levels int `json:"levels,omitempty"`
	// KDLoss: l1 (the paper) or mse (the authors' code).
	KDLoss Dist `json:"kd_loss,omitempty"`
	// UseTeacherD starts the student's discriminator(s) from the teacher's (the authors'
	// use_teacher_d) instead of a fresh initialization: Teacher must then be a run folder, and
	// the student's D the same network as the teacher's (kind, ndf, layers, norm). The
	// teacher's newest checkpoint provides the weights.
	UseTeacherD bool `json:"use_teacher_d,omitempty"`

	// Threads for the kernels (0: all cores).
	Threads int `json:"threads"`
	// Device is where the networks, activations, losses, image pools and Adam state live:
	// "cpu" (also when empty) or "cuda" (GPU 0, in a binary built with -tags cuda). On cuda the
	// host sees the batches going in, the logged loss values, checkpoints and, in a cluster,
	// one pinned copy per gradient bucket each way plus, every step, the rollback snapshot
	// (parameters and Adam moments) and the BatchNorm statistics being averaged. The CUDA context belongs to the
	// goroutine that calls New: call Run (and Resume, Close) from that goroutine.
	Device string `json:"device,omitempty"`
}

// The devices Config.Device names.
const (
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// MarshalJSON writes the configuration with network specs by their flag names.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	return json.Marshal(struct {
		plain
		G        *models.SpecJSON `json:"netG"`
		D        *models.SpecJSON `json:"netD"`
		TeacherG *models.SpecJSON `json:"teacher_netG,omitempty"`
	}{plain(c), models.ToSpecJSON(c.G), models.ToSpecJSON(c.D), models.ToSpecJSON(c.TeacherG)})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	var v struct {
		plain
		G        *models.SpecJSON `json:"netG"`
		D        *models.SpecJSON `json:"netD"`
		TeacherG *models.SpecJSON `json:"teacher_netG,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = Config(v.plain)
	var err error
	if c.G, err = v.G.Spec(); err != nil {
		return err
	}
	if c.D, err = v.D.Spec(); err != nil {
		return err
	}
	c.TeacherG, err = v.TeacherG.Spec()
	return err
}

func base() Config {
	return Config{LR: 2e-4, Beta1: 0.5, Epochs: 100, EpochsDecay: 100, BatchSize: 1, Seed: 1,
		LoadSize: 286, CropSize: 256, CheckpointEvery: 500, KeepCheckpoints: 2, LogEvery: 50,
		KD: KDNone, Alpha: 0, Levels: 3, KDLoss: L1}
}

// DefaultPix2Pix is the reference's pix2pix recipe: U-Net 256 with batch norm and dropout,
// 70x70 PatchGAN, vanilla GAN, L1 lambda 100, no pool.
func DefaultPix2Pix() Config {
	c := base()
	c.Task = Pix2Pix
	c.G = models.Spec{Kind: models.UNet256, InputNC: 3, OutputNC: 3, NGF: 64, Norm: models.Batch, Dropout: true}
	c.D = models.Spec{Kind: models.PatchGAN, InputNC: 6, NDF: 64, Norm: models.Batch}
	c.GANMode = Vanilla
	c.LambdaL1 = 100
	return c
}

// DefaultCycleGAN is the reference's CycleGAN recipe: ResNet-9 with instance norm, PatchGAN,
// LSGAN, cycle lambda 10, identity 0.5, pool 50.
func DefaultCycleGAN() Config {
	c := base()
	c.Task = CycleGAN
	c.G = models.Spec{Kind: models.ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 64, Norm: models.Instance}
	c.D = models.Spec{Kind: models.PatchGAN, InputNC: 3, NDF: 64, Norm: models.Instance}
	c.GANMode = LSGAN
	c.LambdaA, c.LambdaB, c.LambdaIdentity = 10, 10, 0.5
	c.PoolSize = 50
	return c
}

// Distilling reports whether the run has a teacher.
func (c Config) Distilling() bool { return c.Teacher != "" }

// Validate says what is wrong, naming the flag.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	switch c.Task {
	case Pix2Pix, CycleGAN:
	default:
		return bad("--model %q: use pix2pix or cyclegan", c.Task)
	}
	if c.Data == "" {
		return bad("--data: the dataset folder is required (make one with 'wkd data')")
	}
	if c.Dir == "" {
		return bad("--out: the run folder is required")
	}
	if c.G.Kind != 0 && !c.G.Kind.IsGenerator() {
		return bad("--netG %v is a discriminator: use one of %s", c.G.Kind, models.GeneratorNames())
	}
	if err := c.G.Validate(); err != nil {
		return bad("--netG %v (--ngf, --norm, --n-blocks, --num-downs, --input-nc, --output-nc): %v", c.G.Kind, err)
	}
	if c.D.Kind.IsGenerator() {
		return bad("--netD %v is a generator: use basic, n_layers or pixel", c.D.Kind)
	}
	if err := c.D.Validate(); err != nil {
		return bad("--netD %v (--ndf, --n-layers-D, --norm): %v", c.D.Kind, err)
	}
	switch c.GANMode {
	case Vanilla, LSGAN:
	default:
		return bad("--gan-mode %q: use vanilla or lsgan", c.GANMode)
	}
	for _, f := range []struct {
		flag string
		v    float32
	}{{"--lr", c.LR}, {"--beta1", c.Beta1}, {"--alpha", c.Alpha}, {"--lambda-l1", c.LambdaL1}, {"--lambda-A", c.LambdaA},
		{"--lambda-B", c.LambdaB}, {"--lambda-identity", c.LambdaIdentity}} {
		if math.IsNaN(float64(f.v)) || math.IsInf(float64(f.v), 0) {
			return bad("%s %v: must be a finite number", f.flag, f.v)
		}
	}
	for _, f := range []struct {
		flag string
		v    float32
	}{{"--lambda-l1", c.LambdaL1}, {"--lambda-A", c.LambdaA}, {"--lambda-B", c.LambdaB}, {"--lambda-identity", c.LambdaIdentity}} {
		if f.v < 0 {
			return bad("%s %v: a loss weight must be 0 or more", f.flag, f.v)
		}
	}
	if c.LR <= 0 || c.Beta1 < 0 || c.Beta1 >= 1 {
		return bad("--lr %g must be > 0 and --beta1 %g in [0, 1)", c.LR, c.Beta1)
	}
	if c.Epochs < 0 || c.EpochsDecay < 0 || c.Epochs+c.EpochsDecay == 0 {
		return bad("--epochs %d and --epochs-decay %d: need at least one epoch in all", c.Epochs, c.EpochsDecay)
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatch {
		return bad("--batch-size %d: use 1 to %d (1 is the reference's)", c.BatchSize, maxBatch)
	}
	if c.CropSize < 4 || c.LoadSize < c.CropSize || c.LoadSize > maxSide {
		return bad("--crop-size %d and --load-size %d: need 4 <= crop <= load <= %d (the reference's 256 and 286)", c.CropSize, c.LoadSize, maxSide)
	}
	switch data.Preprocess(c.Preprocess) {
	case "", data.ResizeAndCrop, data.Crop, data.ScaleWidthAndCrop:
	case data.ScaleWidth, data.PreprocessNone:
		return bad("--preprocess %s keeps each image's own size, which wkd does not train on: use resize_and_crop, crop or scale_width_and_crop", c.Preprocess)
	default:
		return bad("--preprocess %q: use resize_and_crop, crop or scale_width_and_crop", c.Preprocess)
	}
	if nc := max(c.G.InputNC, c.G.OutputNC, 1); int64(c.BatchSize)*int64(c.LoadSize)*int64(c.LoadSize)*int64(nc) > maxBatchValues {
		return bad("--batch-size %d of %dx%d images (--load-size): more than %d values a batch; lower one of them", c.BatchSize, c.LoadSize, c.LoadSize, int64(maxBatchValues))
	}
	if c.Threads < 0 || c.Threads > maxThreads {
		return bad("--threads %d: use 0 (all cores) to %d", c.Threads, maxThreads)
	}
	if c.MaxSteps < 0 || c.MaxSamples < 0 {
		return bad("--max-steps %d and --max-samples %d: use 0 (no limit) or more", c.MaxSteps, c.MaxSamples)
	}
	for _, n := range []struct {
		flag string
		spec models.Spec
	}{{"--netG", c.G}, {"--netD", c.D}, {"--teacher-netG", c.TeacherG}} {
		if n.spec.Kind == 0 {
			continue
		}
		if p, err := models.ParamCount(n.spec); err == nil && p > maxParams {
			return bad("%s %v: %.3g parameters, more than the %.0e wkd trains (the reference's networks have 3-55 M): lower its width (--ngf, --ndf)", n.flag, n.spec.Kind, float64(p), float64(maxParams))
		}
	}
	if err := fitsCrop(c.CropSize, "--netG", c.G); err != nil {
		return bad("%v", err)
	}
	if err := fitsCrop(c.CropSize, "--netD", c.D); err != nil {
		return bad("%v", err)
	}
	if c.CheckpointEvery < 1 || c.KeepCheckpoints < 1 || c.LogEvery < 1 {
		return bad("--checkpoint-every, --keep-checkpoints and --log-every must be at least 1")
	}
	switch c.Device {
	case "", DeviceCPU, DeviceCUDA:
	default:
		return bad("--device %q: use cpu or cuda", c.Device)
	}
	if c.PoolSize < 0 {
		return bad("--pool-size %d: must be 0 or more", c.PoolSize)
	}
	switch c.KD {
	case KDWavelet, KDPixel, KDNone, "":
	default:
		return bad("--kd %q: use wavelet, pixel or none", c.KD)
	}
	if c.Distilling() {
		if c.Alpha < 0 {
			return bad("--alpha %g: must be 0 or more", c.Alpha)
		}
		if c.Levels < 1 || c.Levels > 8 {
			return bad("--levels %d: use 1 to 8 (3 in the paper)", c.Levels)
		}
		if c.KDLoss != L1 && c.KDLoss != MSE {
			return bad("--kd-loss %q: use l1 or mse", c.KDLoss)
		}
		if c.TeacherG.Kind != 0 {
			if err := c.TeacherG.Validate(); err != nil {
				return bad("--teacher-netG %v (--teacher-ngf, --teacher-norm, --teacher-n-blocks, --teacher-num-downs): %v", c.TeacherG.Kind, err)
			}
			if err := fitsCrop(c.CropSize, "the teacher's generator", c.TeacherG); err != nil {
				return bad("%v", err)
			}
		}
	} else if c.KD != KDNone && c.KD != "" {
		return bad("--kd %s needs --teacher", c.KD)
	} else if c.UseTeacherD {
		return bad("--use-teacher-d needs --teacher")
	}
	if c.Task == CycleGAN && (c.G.InputNC != c.G.OutputNC) && c.LambdaIdentity > 0 {
		return bad("identity loss (--lambda-identity %g) needs input and output channels equal (%d vs %d)", c.LambdaIdentity, c.G.InputNC, c.G.OutputNC)
	}
	return nil
}

// Bounds on sizes far beyond any GAN recipe, so that a typo fails here with a clear error
// instead of exhausting memory.
const (
	maxBatch   = 4096
	maxSide    = 8192
	maxThreads = 1024
	maxParams  = 1_000_000_000
	// maxBatchValues bounds one batch of images (1 GB of float32): 64 images at 2048 px.
	maxBatchValues = 1 << 28
)

// fitsCrop says whether a crop x crop image goes through the network (a generator's sides must
// be a multiple of its downsampling, a discriminator must keep an output), naming the flag.
func fitsCrop(crop int, what string, s models.Spec) error {
	if _, err := models.CountMACs(s, crop, crop); err != nil {
		return fmt.Errorf("--crop-size %d does not fit %s %v: %v", crop, what, s.Kind, err)
	}
	return nil
}

// Save writes the resolved configuration into the run folder as config.json.
func (c Config) Save() error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(c.Dir, "config.json"), append(b, '\n'), 0o600)
}

// LoadConfig reads a run folder's config.json.
func LoadConfig(dir string) (Config, error) {
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return Config{}, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}
