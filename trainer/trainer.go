package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"wkd/data"
	"wkd/models"
	"wkd/ops"
	"wkd/sharding"
)

// GradSync averages values across data-parallel replicas; nil means one process.
type GradSync interface {
	// Average replaces each slice with its mean over the replicas, identically (bit for bit)
	// on all of them. The slices are one network's gradients (or BatchNorm statistics), in
	// reverse layer order so communication can start with the layers backward finished first.
	// An error abandons the step: the cluster changed under it.
	Average(values [][]float32) error
}

// World is where this replica stands in a data-parallel run.
type World struct {
	Rank, Size int
	Sync       GradSync
}

// SetWorld changes this replica's rank, world size or synchronizer between steps; the epoch
// continues from the same global sample position.
func (t *Trainer) SetWorld(w World) { t.world = w }

// Loss is one named, logged loss value.
type Loss struct {
	Name  string
	Value float64
}

// StepReport is what a step reports to its observer: losses in a fixed order, the KD term's
// share of the generator loss, and timing.
type StepReport struct {
	Step     int64
	Epoch    int
	Losses   []Loss
	KDShare  float64
	Images   int
	Duration time.Duration
	SyncTime time.Duration
}

// Trainer runs one Config.
type Trainer struct {
	cfg   Config
	log   zerolog.Logger
	world World

	// Pix2pix uses gA (G), dA (D) and teacherA. CycleGAN: G_A, G_B, D_A, D_B; teachers for both.
	gA, gB, dA, dB       models.Module
	teacherA, teacherB   models.Module
	optG, optD           *optimizer
	gParams, dParams     []*ops.Tensor
	tape                 *ops.Tape
	rng                  *ops.RNG // dropout and the image pool draw from it
	poolA, poolB         *ImagePool
	plan                 *sharding.Plan
	train                *data.Dataset
	loader               *data.Loader
	realA, realB         *ops.Tensor
	at                   sharding.Position // the next step's position
	step                 int64             // steps completed
	start                time.Time
	observer             func(StepReport)
	progress             *progress
	logFile              *os.File
	lastCheckpointedStep int64
	logFields            map[string]any
	shareWeight          float32     // this rank's gradient weight for uneven shares
	syncBufs             [][]float32 // reused list of slices handed to the synchronizer
	snapshot             snapshot    // the state before the step in flight (multi-replica runs)
	overlapOn            bool        // communicate gradients during backward when the sync can
	gOverlap, dOverlap   *overlap
	dev                  ops.Device  // nil: the host
	bufHost              [][]float32 // BatchNorm statistics copied to the host for syncBuffers
}

// WithOverlap turns on or off averaging gradient buckets while backward still runs (when
// the world's GradSync is a BucketSync). Defaults to on.
func WithOverlap(on bool) Option { return func(t *Trainer) { t.overlapOn = on } }

// Close releases the run's log file and the device.
func (t *Trainer) Close() error {
	err := t.logFile.Close()
	if t.dev != nil {
		err = errors.Join(err, t.dev.Close())
		t.dev = nil
	}
	return err
}

// Option configures a Trainer.
type Option func(*Trainer)

// WithWorld makes the trainer one replica of a data-parallel run. Defaults to a world of one.
func WithWorld(w World) Option { return func(t *Trainer) { t.world = w } }

// WithObserver receives every step's report (metrics export). It runs on the training
// goroutine and must not block.
func WithObserver(f func(StepReport)) Option { return func(t *Trainer) { t.observer = f } }

// WithLogFields adds fields to every log line (node, rank, generation in a cluster).
func WithLogFields(f map[string]any) Option { return func(t *Trainer) { t.logFields = f } }

// WithProgress draws a progress bar on w (a terminal). Defaults to none.
func WithProgress(w io.Writer) Option { return func(t *Trainer) { t.progress = newProgress(w) } }

// New builds the networks, the data pipeline and the optimizers of cfg. With resume, it
// continues from the newest intact checkpoint of cfg.Dir (or the file resumeFrom names).
//
// Log lines go to logOut (a zerolog.ConsoleWriter on a terminal, or JSON) and, as JSON, to
// log.jsonl in the run folder, which `wkd eval` reads for loss curves.
func New(cfg Config, logOut io.Writer, opts ...Option) (*Trainer, error) {
	if cfg.KD == "" {
		cfg.KD = KDNone
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, world: World{Rank: 0, Size: 1}, tape: ops.NewTape(), start: time.Now(), shareWeight: 1, overlapOn: true}
	for _, o := range opts {
		o(t)
	}
	if cfg.Threads > 0 {
		ops.SetThreads(cfg.Threads)
	}
	if cfg.Device == DeviceCUDA {
		d, err := OpenDevice(cfg.Device)
		if err != nil {
			return nil, err
		}
		t.dev = d
		// Until New succeeds nobody else will close the device.
		defer func() {
			if t.logFile == nil && t.dev != nil {
				t.dev.Close()
			}
		}()
	}
	initRNG := ops.NewRNG(cfg.Seed)
	t.rng = ops.NewRNG(cfg.Seed ^ 0x9e3779b97f4a7c15)
	build := func(s models.Spec) (models.Module, error) {
		m, err := models.Build(s)
		if err != nil {
			return nil, err
		}
		models.Init(m, initRNG)
		m.SetRNG(t.rng)
		return m, nil
	}
	var err error
	if t.gA, err = build(cfg.G); err != nil {
		return nil, err
	}
	if t.dA, err = build(cfg.D); err != nil {
		return nil, err
	}
	t.gParams, t.dParams = t.gA.Params(), t.dA.Params()
	if cfg.Task == CycleGAN {
		gbSpec := cfg.G
		gbSpec.InputNC, gbSpec.OutputNC = cfg.G.OutputNC, cfg.G.InputNC
		if t.gB, err = build(gbSpec); err != nil {
			return nil, err
		}
		dbSpec := cfg.D
		dbSpec.InputNC = cfg.G.InputNC
		if t.dB, err = build(dbSpec); err != nil {
			return nil, err
		}
		t.gParams = append(append([]*ops.Tensor(nil), t.gParams...), t.gB.Params()...)
		t.dParams = append(append([]*ops.Tensor(nil), t.dParams...), t.dB.Params()...)
		t.poolA, t.poolB = NewImagePool(cfg.PoolSize), NewImagePool(cfg.PoolSize)
	}
	if cfg.Distilling() {
		if err := t.loadTeachers(); err != nil {
			return nil, err
		}
		if cfg.UseTeacherD {
			if err := t.loadTeacherD(); err != nil {
				return nil, err
			}
		}
	}
	if t.dev != nil {
		// Built and initialized (or loaded) on the host, as on the CPU, then moved once:
		// both devices start from the same weights.
		for _, m := range []models.Module{t.gA, t.gB, t.dA, t.dB, t.teacherA, t.teacherB} {
			if m != nil {
				models.MoveTo(m, t.dev)
			}
		}
		if err := t.dev.Err(); err != nil {
			return nil, fmt.Errorf("%w: --device cuda: moving the networks: %w", ErrDevice, err)
		}
	}
	adam := ops.AdamConfig{LR: cfg.LR, Beta1: cfg.Beta1, Beta2: 0.999, Eps: 1e-8}
	var gNets, dNets []namedNet
	for _, n := range t.nets() {
		if strings.HasPrefix(n.name, "G") {
			gNets = append(gNets, n)
		} else {
			dNets = append(dNets, n)
		}
	}
	t.optG, t.optD = newOptimizer(adam, gNets), newOptimizer(adam, dNets)
	t.gOverlap, t.dOverlap = newOverlap(t.gParams, t.dev), newOverlap(t.dParams, t.dev)

	dcfg := data.DefaultPix2PixConfig(cfg.Data)
	if cfg.Task == CycleGAN {
		dcfg = data.DefaultCycleGANConfig(cfg.Data)
	}
	dcfg.InputNC, dcfg.OutputNC = cfg.G.InputNC, cfg.G.OutputNC
	dcfg.LoadSize, dcfg.CropSize, dcfg.NoFlip, dcfg.MaxDatasetSize = cfg.LoadSize, cfg.CropSize, cfg.NoFlip, cfg.MaxSamples
	dcfg.BtoA = cfg.BtoA
	if cfg.Preprocess != "" {
		dcfg.Preprocess = data.Preprocess(cfg.Preprocess)
	}
	if t.train, err = data.Open(dcfg); err != nil {
		return nil, err
	}
	var checked func(done, total int)
	if t.progress != nil {
		checked = t.progress.count("checking images")
	}
	if err := t.train.CheckHeaders(checked); err != nil {
		return nil, err
	}
	if t.loader, err = data.NewLoader(t.train, data.LoaderConfig{Seed: cfg.Seed}); err != nil {
		return nil, err
	}
	if t.plan, err = sharding.New(sharding.Config{Samples: t.train.Len(), Seed: cfg.Seed}); err != nil {
		return nil, err
	}
	// The run folder is made last, so a run that cannot start leaves nothing behind.
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cfg.Dir, "log.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	t.logFile = f
	if logOut == nil {
		logOut = io.Discard
	}
	if t.progress != nil {
		logOut = t.progress.around(logOut)
	}
	t.log = zerolog.New(zerolog.MultiLevelWriter(logOut, f)).With().Timestamp().Fields(t.logFields).Logger()
	return t, nil
}

// Config is the run's resolved configuration.
func (t *Trainer) Config() Config { return t.cfg }

// Step is the number of completed steps.
func (t *Trainer) Step() int64 { return t.step }

// Generators returns the trained generators by checkpoint name ("G", or "G_A" and "G_B").
func (t *Trainer) Generators() map[string]models.Module {
	if t.cfg.Task == CycleGAN {
		return map[string]models.Module{"G_A": t.gA, "G_B": t.gB}
	}
	return map[string]models.Module{"G": t.gA}
}

// nets names every trained network, as checkpoints store them.
func (t *Trainer) nets() []namedNet {
	if t.cfg.Task == CycleGAN {
		return []namedNet{{"G_A", t.gA}, {"G_B", t.gB}, {"D_A", t.dA}, {"D_B", t.dB}}
	}
	return []namedNet{{"G", t.gA}, {"D", t.dA}}
}

type namedNet struct {
	name string
	net  models.Module
}

// totalEpochs is the run's length.
func (t *Trainer) totalEpochs() int { return t.cfg.Epochs + t.cfg.EpochsDecay }

// Run trains until the last epoch (or MaxSteps), writing checkpoints and logs into the run
// folder, and the final generators. It stops early, after a checkpoint, when ctx is done.
func (t *Trainer) Run(ctx context.Context) error {
	if t.world.Rank == 0 {
		if err := t.cfg.Save(); err != nil {
			return err
		}
	}
	stepsPerEpoch := t.plan.Steps(t.cfg.BatchSize)
	total := int64(stepsPerEpoch * t.totalEpochs())
	if t.cfg.MaxSteps > 0 {
		total = min(total, int64(t.cfg.MaxSteps))
	}
	t.log.Info().Str("task", string(t.cfg.Task)).Str("G", t.cfg.G.String()).Str("D", t.cfg.D.String()).
		Int64("G_params", models.CountParams(t.gA)).Int("samples", t.train.Len()).Int("steps_per_epoch", stepsPerEpoch).
		Int64("total_steps", total).Str("kd", string(t.cfg.KD)).Float32("alpha", t.cfg.Alpha).Msg("training")
	if t.progress != nil {
		t.progress.start(total, t.step)
		defer t.progress.finish()
	}
	for t.at.Epoch < t.totalEpochs() && (t.cfg.MaxSteps == 0 || t.step < int64(t.cfg.MaxSteps)) {
		factor := lrFactor(t.at.Epoch, t.cfg.Epochs, t.cfg.EpochsDecay)
		t.optG.SetLR(t.cfg.LR * factor)
		t.optD.SetLR(t.cfg.LR * factor)
		if err := t.runEpoch(ctx); err != nil {
			// Interrupted by the user (not by a cluster's view change, which cancels with a
			// cause of its own, see ErrWorldChanged): rank 0 saves the last completed step.
			cause := context.Cause(ctx)
			userStop := errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded)
			if userStop && t.world.Rank == 0 && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				t.log.Warn().Int64("step", t.step).Msg("interrupted: writing a checkpoint")
				if cerr := t.checkpoint(); cerr != nil {
					return errors.Join(err, cerr)
				}
			}
			// A bad image deep in the dataset: keep what was trained up to it, then say which
			// file and how to go on.
			if t.world.Rank == 0 && (errors.Is(err, data.ErrCorruptImage) || errors.Is(err, data.ErrBadSize) || errors.Is(err, data.ErrSizeMismatch)) {
				if t.lastCheckpointedStep != t.step {
					if cerr := t.checkpoint(); cerr != nil {
						return errors.Join(err, cerr)
					}
				}
				return fmt.Errorf("%w\nsteps up to %d are saved in %s: fix or remove that image, then continue with --resume", err, t.step, t.cfg.Dir)
			}
			return err
		}
	}
	if t.world.Rank != 0 {
		return nil
	}
	if t.lastCheckpointedStep != t.step {
		if err := t.checkpoint(); err != nil {
			return err
		}
	}
	for name, g := range t.Generators() {
		p := filepath.Join(t.cfg.Dir, name+".safetensors")
		if err := models.Save(p, g, map[string]string{"wkd.step": fmt.Sprint(t.step)}); err != nil {
			if derr := t.deviceErr(t.step); derr != nil {
				return fmt.Errorf("%s not written: %w", p, derr)
			}
			return err
		}
		t.log.Info().Str("path", p).Msg("saved generator")
	}
	return nil
}

// runEpoch trains from t.at to the end of its epoch.
func (t *Trainer) runEpoch(ctx context.Context) error {
	if t.cfg.BatchSize < t.world.Size {
		return fmt.Errorf("%w: --batch-size %d is the global batch; it must be at least the number of nodes (%d)", ErrConfig, t.cfg.BatchSize, t.world.Size)
	}
	shards := t.plan.Shards(t.at, t.world.Rank, t.world.Size, t.cfg.BatchSize)
	if t.cfg.MaxSteps > 0 {
		left := int64(t.cfg.MaxSteps) - t.step
		if int64(len(shards)) > left {
			shards = shards[:left]
		}
	}
	batches := t.loader.EpochBatches(ctx, t.at.Epoch, shards)
	defer batches.Close()
	for range shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := batches.Next()
		if err != nil {
			return err
		}
		if n := len(t.plan.GlobalBatch(t.at.Epoch, t.at.Pos, t.cfg.BatchSize)); n < t.world.Size {
			// The epoch's tail has fewer samples than ranks: every rank skips it alike
			// (DDP's drop_last for that batch); one process would train on it.
			t.log.Info().Int("epoch", t.at.Epoch).Int("samples", n).Int("world", t.world.Size).Msg("skipping a tail batch smaller than the world")
			t.at = t.plan.Next(t.at, t.cfg.BatchSize)
			continue
		}
		t0 := time.Now()
		distributed := t.world.Sync != nil && t.world.Size > 1
		if distributed {
			t.saveSnapshot()
			n := len(t.plan.GlobalBatch(t.at.Epoch, t.at.Pos, t.cfg.BatchSize))
			t.shareWeight = float32(sharding.Weight(n, t.world.Rank, t.world.Size) * float64(t.world.Size))
		}
		rep, err := t.trainStep(b)
		if err == nil && distributed {
			err = t.syncBuffers(&rep)
		}
		if err != nil {
			// A failed device cannot upload the snapshot back: nothing to roll back to.
			if distributed && !errors.Is(err, ErrDiverged) && !errors.Is(err, ErrDevice) {
				if rerr := t.restoreSnapshot(); rerr != nil {
					return errors.Join(err, rerr)
				}
				t.log.Warn().Err(err).Int64("step", t.step+1).Msg("step abandoned; rolled back")
				return fmt.Errorf("%w: %w", ErrStepAborted, err)
			}
			return err
		}
		t.step++
		t.at = t.plan.Next(t.at, t.cfg.BatchSize)
		rep.Step, rep.Duration, rep.Images = t.step, time.Since(t0), t.cfg.BatchSize
		t.report(rep)
		if t.step%int64(t.cfg.CheckpointEvery) == 0 && t.world.Rank == 0 {
			if err := t.checkpoint(); err != nil {
				return err
			}
		}
	}
	return nil
}

// trainStep runs one optimization step of the task on batch b.
func (t *Trainer) trainStep(b *data.Batch) (StepReport, error) {
	t.realA = fillTensor(t.dev, t.realA, b.A, b.AShape)
	t.realB = fillTensor(t.dev, t.realB, b.B, b.BShape)
	t.tape.Reset()
	var rep StepReport
	var err error
	if t.cfg.Task == CycleGAN {
		rep, err = t.cycleGANStep()
	} else {
		rep, err = t.pix2pixStep()
	}
	rep.Epoch = t.at.Epoch
	// Launches are asynchronous: a fault of this step's kernels shows here at the latest
	// (reading the losses waited for them). It explains any other error of the step (a
	// synchronizer refused because the device failed first, garbage losses), so it goes first.
	if derr := t.deviceErr(t.step + 1); derr != nil {
		return rep, derr
	}
	for _, l := range rep.Losses {
		if math.IsNaN(l.Value) || math.IsInf(l.Value, 0) {
			return rep, fmt.Errorf("%w: %s = %v at step %d; lower --lr or --alpha, or resume from the last checkpoint", ErrDiverged, l.Name, l.Value, t.step+1)
		}
	}
	return rep, err
}

// deviceErr is the device's sticky error as the run reports it, naming the flag and the step
// (nil on the host or while the device is sound).
func (t *Trainer) deviceErr(step int64) error {
	if t.dev == nil {
		return nil
	}
	if err := t.dev.Err(); err != nil {
		return fmt.Errorf("%w: --device %s: step %d: %w", ErrDevice, t.cfg.Device, step, err)
	}
	return nil
}

// fillTensor copies a batch into a persistent input tensor on dev (nil: the host),
// reallocating only on a new shape.
func fillTensor(dev ops.Device, dst *ops.Tensor, src []float32, shape [4]int) *ops.Tensor {
	if dst == nil || dst.Numel() != len(src) || dst.Shape[0] != shape[0] || dst.Shape[1] != shape[1] || dst.Shape[2] != shape[2] {
		dst = ops.NewOn(dev, shape[0], shape[1], shape[2], shape[3])
	}
	dst.CopyFromHost(src)
	return dst
}

// syncGrads averages params' gradients over the world and times it. A rank's share of the
// global batch may be one sample larger than another's; its gradient, a mean over its share,
// is first weighted by share*world/batch so that the average over ranks is the mean over the
// global batch, as one process would compute it.
func (t *Trainer) syncGrads(params []*ops.Tensor, rep *StepReport) error {
	if t.world.Sync == nil || t.world.Size == 1 {
		return nil
	}
	if t.shareWeight != 1 {
		for _, p := range params {
			for i := range p.Grad {
				p.Grad[i] *= t.shareWeight
			}
		}
	}
	t0 := time.Now()
	t.syncBufs = t.syncBufs[:0]
	for i := len(params) - 1; i >= 0; i-- {
		t.syncBufs = append(t.syncBufs, params[i].Grad)
	}
	err := t.world.Sync.Average(t.syncBufs)
	rep.SyncTime += time.Since(t0)
	return err
}

// syncBuffers averages BatchNorm running statistics over the world, so replicas stay
// identical; each replica normalized with its own share's batch statistics (docs/cluster.md,
// "Batch norm across nodes").
func (t *Trainer) syncBuffers(rep *StepReport) error {
	if t.world.Sync == nil || t.world.Size == 1 {
		return nil
	}
	t.syncBufs = t.syncBufs[:0]
	for _, n := range t.nets() {
		for _, b := range n.net.Buffers() {
			if t.dev == nil {
				t.syncBufs = append(t.syncBufs, b.Data)
				continue
			}
			// A few hundred floats per network: plain copies, no bucket.
			i := len(t.syncBufs)
			if i == len(t.bufHost) {
				t.bufHost = append(t.bufHost, nil)
			}
			t.bufHost[i] = append(t.bufHost[i][:0], make([]float32, b.Numel())...)
			b.CopyToHost(t.bufHost[i])
			t.syncBufs = append(t.syncBufs, t.bufHost[i])
		}
	}
	if len(t.syncBufs) == 0 {
		return nil
	}
	if err := t.deviceErr(t.step + 1); err != nil {
		return err // the downloads did nothing: send no stale statistics
	}
	t0 := time.Now()
	err := t.world.Sync.Average(t.syncBufs)
	if err == nil && t.dev != nil {
		i := 0
		for _, n := range t.nets() {
			for _, b := range n.net.Buffers() {
				b.CopyFromHost(t.syncBufs[i])
				i++
			}
		}
	}
	rep.SyncTime += time.Since(t0)
	return err
}

// teacherOutput runs a frozen teacher with recording off: no tape memory, no gradient.
func (t *Trainer) teacherOutput(teacher models.Module, x *ops.Tensor) *ops.Tensor {
	was := t.tape.SetNoGrad(true)
	defer t.tape.SetNoGrad(was)
	return teacher.Forward(t.tape, x, false)
}

func setRequiresGrad(params []*ops.Tensor, on bool) {
	for _, p := range params {
		p.SetRequiresGrad(on)
	}
}

// value reads a scalar loss for the log: on a device, a 4-byte copy that waits for the step.
func value(t *ops.Tensor) float64 {
	if !t.OnDevice() {
		return float64(t.Data[0])
	}
	var v [1]float32
	t.CopyToHost(v[:])
	return float64(v[0])
}

// OpenDevice opens what a --device flag names: nil for cpu (or ""), GPU 0 for cuda, or an
// error that names the flag and, in a build without CUDA, says how to get one. The device
// belongs to the calling goroutine (see Config.Device).
func OpenDevice(name string) (ops.Device, error) {
	switch name {
	case "", DeviceCPU:
		return nil, nil
	case DeviceCUDA:
	default:
		return nil, fmt.Errorf("%w: --device %q: use cpu or cuda", ErrConfig, name)
	}
	d, err := ops.OpenDevice(DeviceCUDA, 0)
	if errors.Is(err, ops.ErrNoBackend) {
		return nil, fmt.Errorf("%w: --device cuda: this binary was built without CUDA; build it with `go build -tags cuda ./cmd/wkd` on a machine with the CUDA toolkit (or eval \"$(bash scripts/cuda-deps.sh)\" first; see the Makefile's cuda-check)", ErrConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("--device cuda: %w", err)
	}
	return d, nil
}

func (t *Trainer) report(rep StepReport) {
	if t.observer != nil {
		t.observer(rep)
	}
	if t.progress != nil {
		t.progress.update(rep)
	}
	if t.step%int64(t.cfg.LogEvery) != 0 && t.step != 1 {
		return
	}
	ev := t.log.Info().Int64("step", t.step).Int("epoch", rep.Epoch).Int("rank", t.world.Rank)
	for _, l := range rep.Losses {
		ev = ev.Float64(l.Name, l.Value)
	}
	if t.cfg.Distilling() && t.cfg.KD != KDNone {
		ev = ev.Float64("kd_share", rep.KDShare)
	}
	ev.Float64("img_per_s", float64(rep.Images)/rep.Duration.Seconds()).
		Float64("sync_ms", float64(rep.SyncTime.Microseconds())/1e3).
		Float64("lr", float64(t.optG.LR())).Msg("step")
}
