package trainer

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"wkd/internal/safetensors"
	"wkd/models"
	"wkd/ops"
	"wkd/sharding"
)

// Checkpoint metadata keys.
const (
	metaStep     = "wkd.step"
	metaPosition = "wkd.position"
	metaRNG      = "wkd.rng"
	metaConfig   = "wkd.config"
	metaSum      = "wkd.sha256"
	ckptDir      = "ckpt"
)

// checkpointPath is where the checkpoint of a step lives.
func (t *Trainer) checkpointPath(step int64) string {
	return filepath.Join(t.cfg.Dir, ckptDir, fmt.Sprintf("step-%08d.safetensors", step))
}

// Checkpoint writes a checkpoint of the last completed step into the run folder, unless one
// of that step is already there: a cluster member that is stopped while its ring is broken
// (every node stopping at once) keeps what was trained this way.
func (t *Trainer) Checkpoint() error {
	if t.lastCheckpointedStep == t.step {
		return nil
	}
	return t.checkpoint()
}

// checkpoint writes the full training state: every network, both optimizers, the image pools,
// the random stream, the data position and the configuration. The file is written to a
// temporary name and renamed, and older checkpoints beyond KeepCheckpoints are removed only
// after the new one is in place.
func (t *Trainer) checkpoint() error {
	path := t.checkpointPath(t.step)
	tensors, meta, err := t.state()
	if err != nil {
		// Nothing written and nothing rotated: the previous checkpoints stay to resume from.
		return fmt.Errorf("checkpoint %s not written: %w", path, err)
	}
	dir := filepath.Join(t.cfg.Dir, ckptDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	t.lastCheckpointedStep = t.step
	t.log.Info().Int64("step", t.step).Str("path", path).Msg("checkpoint")
	all, err := listCheckpoints(t.cfg.Dir)
	if err != nil {
		return err
	}
	for len(all) > t.cfg.KeepCheckpoints {
		if all[0] != path { // never the one just written, whatever steps an older run left
			os.Remove(all[0])
		}
		all = all[1:]
	}
	return nil
}

// state is the whole training state as named tensors and metadata, checksummed: what a
// checkpoint holds and what a joining replica receives.
func (t *Trainer) state() (map[string]safetensors.Tensor, map[string]string, error) {
	tensors := map[string]safetensors.Tensor{}
	for _, n := range t.nets() {
		for _, p := range n.net.State() {
			tensors[n.name+"/"+p.Name] = safetensors.Tensor{Shape: p.Shape, Data: p.HostData()}
		}
	}
	for name, opt := range map[string]*optimizer{"optG": t.optG, "optD": t.optD} {
		for k, v := range opt.State() {
			tensors[name+"/"+k] = safetensors.Tensor{Shape: []int{len(v)}, Data: v}
		}
	}
	for name, pool := range map[string]*ImagePool{"pool_A": t.poolA, "pool_B": t.poolB} {
		if pool == nil {
			continue
		}
		for i, img := range pool.images {
			tensors[fmt.Sprintf("%s/%06d", name, i)] = safetensors.Tensor{Shape: pool.shape[:], Data: img.HostData()}
		}
	}
	// A failed device downloads nothing (zeros): such a state must not get a checksum.
	if err := t.deviceErr(t.step); err != nil {
		return nil, nil, err
	}
	pos, _ := json.Marshal(t.at)
	cfg, _ := json.Marshal(t.cfg)
	meta := map[string]string{
		metaStep:     strconv.FormatInt(t.step, 10),
		metaPosition: string(pos),
		metaRNG:      base64.StdEncoding.EncodeToString(t.rng.State()),
		metaConfig:   string(cfg),
	}
	meta[metaSum] = checksum(tensors, meta)
	return tensors, meta, nil
}

// StateBytes encodes the whole training state (safetensors), for a replica that joins.
func (t *Trainer) StateBytes() ([]byte, error) {
	tensors, meta, err := t.state()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = safetensors.Encode(&buf, tensors, meta)
	return buf.Bytes(), err
}

// LoadStateBytes replaces the training state with one StateBytes encoded (verified first).
func (t *Trainer) LoadStateBytes(b []byte) error {
	tensors, meta, err := safetensors.Decode(b)
	if err != nil {
		return fmt.Errorf("%w: state from a peer: %w", ErrCheckpoint, err)
	}
	if got := checksum(tensors, meta); got != meta[metaSum] {
		return fmt.Errorf("%w: state from a peer: checksum mismatch", ErrCheckpoint)
	}
	return t.applyState("state from a peer", tensors, meta)
}

// checksum hashes every tensor (name, shape, bits) and every metadata entry but the checksum
// itself, in sorted order: any altered byte of a checkpoint changes it.
func checksum(tensors map[string]safetensors.Tensor, meta map[string]string) string {
	h := sha256.New()
	var buf [8]byte
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := tensors[n]
		h.Write([]byte(n))
		for _, d := range t.Shape {
			binary.LittleEndian.PutUint64(buf[:], uint64(d))
			h.Write(buf[:])
		}
		b := make([]byte, 4*len(t.Data))
		for i, v := range t.Data {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		h.Write(b)
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		if k != metaSum {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Write([]byte(k + "=" + meta[k] + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// listCheckpoints returns a run's checkpoint files, oldest first.
func listCheckpoints(dir string) ([]string, error) {
	all, err := filepath.Glob(filepath.Join(dir, ckptDir, "step-*.safetensors"))
	if err != nil {
		return nil, err
	}
	slices.Sort(all) // zero-padded step numbers sort in step order
	return all, nil
}

// LatestCheckpoint returns the newest checkpoint of a run folder, or "" when there is none.
func LatestCheckpoint(dir string) (string, error) {
	all, err := listCheckpoints(dir)
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[len(all)-1], nil
}

// readCheckpoint loads and verifies a checkpoint file.
func readCheckpoint(path string) (map[string]safetensors.Tensor, map[string]string, error) {
	tensors, meta, err := safetensors.Read(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	want, ok := meta[metaSum]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s has no %s entry: not a wkd checkpoint", ErrCheckpoint, path, metaSum)
	}
	if got := checksum(tensors, meta); got != want {
		return nil, nil, fmt.Errorf("%w: %s: checksum mismatch (file altered or damaged)", ErrCheckpoint, path)
	}
	return tensors, meta, nil
}

// Resume loads the training state from a checkpoint file, or from the newest checkpoint of
// the run folder when path is "". Nothing is changed on error, and the error names the file
// and, where the newest file is damaged, the previous one to resume from instead.
func (t *Trainer) Resume(path string) error {
	if path == "" {
		all, err := listCheckpoints(t.cfg.Dir)
		if err != nil {
			return err
		}
		if len(all) == 0 {
			return fmt.Errorf("%w: --resume: no checkpoint in %s", ErrCheckpoint, filepath.Join(t.cfg.Dir, ckptDir))
		}
		path = all[len(all)-1]
		if err := t.resumeFrom(path); err != nil {
			if len(all) > 1 {
				return fmt.Errorf("%w\nthe previous checkpoint %s is kept: resume from it with --resume-from %s", err, all[len(all)-2], all[len(all)-2])
			}
			return err
		}
		return nil
	}
	return t.resumeFrom(path)
}

func (t *Trainer) resumeFrom(path string) error {
	tensors, meta, err := readCheckpoint(path)
	if err != nil {
		return err
	}
	if err := t.applyState(path, tensors, meta); err != nil {
		return err
	}
	t.lastCheckpointedStep = t.step
	t.log.Info().Str("path", path).Int64("step", t.step).Int("epoch", t.at.Epoch).Int("pos", t.at.Pos).Msg("resumed")
	return nil
}

// applyState checks a decoded state against this trainer's networks, then loads it. Nothing
// changes on a refused state (a failing device aside: see the end); errors name where the
// state came from.
func (t *Trainer) applyState(path string, tensors map[string]safetensors.Tensor, meta map[string]string) error {
	// Check everything before changing anything.
	for _, n := range t.nets() {
		for _, p := range n.net.State() {
			src, ok := tensors[n.name+"/"+p.Name]
			if !ok || len(src.Data) != p.Numel() {
				return fmt.Errorf("%w: %s lacks %s/%s %v: made for another model? (this run: %v)", ErrCheckpoint, path, n.name, p.Name, p.Shape, n.net.Spec())
			}
		}
	}
	step, err := strconv.ParseInt(meta[metaStep], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s: step %q", ErrCheckpoint, path, meta[metaStep])
	}
	var at sharding.Position
	if err := json.Unmarshal([]byte(meta[metaPosition]), &at); err != nil {
		return fmt.Errorf("%w: %s: position: %v", ErrCheckpoint, path, err)
	}
	rngState, err := base64.StdEncoding.DecodeString(meta[metaRNG])
	if err != nil {
		return fmt.Errorf("%w: %s: rng: %v", ErrCheckpoint, path, err)
	}
	opt := map[string]map[string][]float32{"optG": {}, "optD": {}}
	pools := map[string][]string{}
	for name, v := range tensors {
		prefix, rest, _ := strings.Cut(name, "/")
		if o, ok := opt[prefix]; ok {
			o[rest] = v.Data
		}
		if prefix == "pool_A" || prefix == "pool_B" {
			pools[prefix] = append(pools[prefix], name)
		}
	}
	// Pool images are (C, crop, crop) of this run, at most --pool-size of them per pool: a
	// checkpoint of another crop size would make the first swap copy the wrong amount.
	for prefix, names := range pools {
		if len(names) > t.cfg.PoolSize {
			return fmt.Errorf("%w: %s holds %d %s images, this run's --pool-size is %d", ErrCheckpoint, path, len(names), prefix, t.cfg.PoolSize)
		}
		for _, n := range names {
			sh := tensors[n].Shape
			if len(sh) != 3 || sh[1] != t.cfg.CropSize || sh[2] != t.cfg.CropSize || sh[0] != tensors[names[0]].Shape[0] {
				return fmt.Errorf("%w: %s: %s has shape %v, this run's images are (C, %d, %d) (--crop-size): made for another run?", ErrCheckpoint, path, n, sh, t.cfg.CropSize, t.cfg.CropSize)
			}
		}
	}
	for _, c := range []struct {
		name string
		opt  *optimizer
	}{{"optG", t.optG}, {"optD", t.optD}} {
		if err := c.opt.CheckState(opt[c.name]); err != nil {
			return fmt.Errorf("%s: %s: %w", path, c.name, err)
		}
	}
	if err := ops.NewRNG(0).SetState(rngState); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Checked: from here on nothing fails.
	if err := t.optG.SetState(opt["optG"]); err != nil {
		panic("trainer: optG state changed after its check: " + err.Error())
	}
	if err := t.optD.SetState(opt["optD"]); err != nil {
		panic("trainer: optD state changed after its check: " + err.Error())
	}
	if err := t.rng.SetState(rngState); err != nil {
		panic("trainer: random state changed after its check: " + err.Error())
	}
	for _, n := range t.nets() {
		for _, p := range n.net.State() {
			p.CopyFromHost(tensors[n.name+"/"+p.Name].Data)
		}
	}
	for name, pool := range map[string]*ImagePool{"pool_A": t.poolA, "pool_B": t.poolB} {
		if pool == nil {
			continue
		}
		names := pools[name]
		slices.Sort(names)
		pool.images = pool.images[:0]
		for _, n := range names {
			v := tensors[n]
			img := ops.FromData(v.Data, v.Shape...)
			if t.dev != nil {
				img = ops.NewOn(t.dev, v.Shape...)
				img.CopyFromHost(v.Data)
			}
			pool.images = append(pool.images, img)
			copy(pool.shape[:], v.Shape)
		}
	}
	t.step, t.at = step, at
	// The one error left after the checks: the device failed while taking the state, which
	// leaves it partly loaded, and the run cannot go on anyway.
	if t.dev != nil {
		if err := t.dev.Err(); err != nil {
			return fmt.Errorf("%w: --device %s: loading %s: %w", ErrDevice, t.cfg.Device, path, err)
		}
	}
	return nil
}

// loadTeachers reads the frozen teacher generator(s) named by cfg.Teacher: a run folder (its
// config.json gives the architecture, G.safetensors or G_A/G_B.safetensors the weights), or a
// weights file whose architecture cfg.TeacherG gives, or else the file's metadata.
func (t *Trainer) loadTeachers() error {
	path := t.cfg.Teacher
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: --teacher %s does not exist: train a teacher there with `wkd train --out %s`, or name one (`make demo` leaves its teacher in runs/demo/teacher)", ErrConfig, path, path)
		}
		return fmt.Errorf("--teacher: %w", err)
	}
	spec := t.cfg.TeacherG
	fromFlags := spec.Kind != 0 && !st.IsDir()
	files := map[string]string{}
	if st.IsDir() {
		tc, err := LoadConfig(path)
		if err != nil {
			return fmt.Errorf("--teacher %s: not a wkd run folder: %w", path, err)
		}
		if tc.Task != t.cfg.Task {
			return fmt.Errorf("%w: --teacher %s was trained for %s, this run is %s", ErrConfig, path, tc.Task, t.cfg.Task)
		}
		if spec.Kind == 0 {
			spec = tc.G
		}
		if t.cfg.Task == CycleGAN {
			files["G_A"], files["G_B"] = filepath.Join(path, "G_A.safetensors"), filepath.Join(path, "G_B.safetensors")
		} else {
			files["G"] = filepath.Join(path, "G.safetensors")
		}
	} else {
		if spec.Kind == 0 {
			arch, ok, err := models.ArchOf(path)
			if err != nil {
				return fmt.Errorf("--teacher: %w", err)
			}
			if !ok {
				return fmt.Errorf("%w: --teacher %s is a weights file that does not record its architecture: give it with --teacher-netG, --teacher-ngf and --teacher-norm (--teacher-n-blocks or --teacher-num-downs for resnet or unet), or convert the file with `wkd convert --netG ...`, which records it", ErrConfig, path)
			}
			spec = arch
		}
		if spec.InputNC != t.cfg.G.InputNC || spec.OutputNC != t.cfg.G.OutputNC {
			return fmt.Errorf("%w: --teacher %s maps %d to %d channels, the student %d to %d (--input-nc, --output-nc)", ErrConfig, path, spec.InputNC, spec.OutputNC, t.cfg.G.InputNC, t.cfg.G.OutputNC)
		}
		if t.cfg.Task == CycleGAN {
			return fmt.Errorf("%w: --teacher for cyclegan must be a run folder holding G_A and G_B", ErrConfig)
		}
		files["G"] = path
	}
	if err := fitsCrop(t.cfg.CropSize, "the teacher's generator", spec); err != nil {
		return fmt.Errorf("%w: --teacher %s: %v", ErrConfig, path, err)
	}
	t.cfg.TeacherG = spec
	load := func(s models.Spec, file string) (models.Module, error) {
		m, err := models.Build(s)
		if err != nil {
			return nil, err
		}
		if _, err := models.Load(file, m); err != nil {
			if fromFlags && (errors.Is(err, models.ErrMissing) || errors.Is(err, models.ErrShape)) {
				// The network was described by flags, which may not be the file's.
				return nil, fmt.Errorf("--teacher: %w; are --teacher-netG, --teacher-ngf, --teacher-norm (default: --norm), --teacher-n-blocks, --teacher-num-downs and --teacher-no-dropout those of the file?", err)
			}
			return nil, fmt.Errorf("--teacher: %w", err)
		}
		for _, p := range m.Params() {
			p.DropGrad()
		}
		return m, nil
	}
	if t.cfg.Task == CycleGAN {
		if t.teacherA, err = load(spec, files["G_A"]); err != nil {
			return err
		}
		specB := spec
		specB.InputNC, specB.OutputNC = spec.OutputNC, spec.InputNC
		t.teacherB, err = load(specB, files["G_B"])
		return err
	}
	t.teacherA, err = load(spec, files["G"])
	return err
}

// loadTeacherD copies the teacher's discriminator(s) (D, or D_A and D_B) from the newest
// checkpoint of its run folder into the student's, which must be the same network.
func (t *Trainer) loadTeacherD() error {
	dir := t.cfg.Teacher
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: --use-teacher-d needs --teacher to be a wkd run folder (its checkpoint holds the discriminator), not the weights file %s", ErrConfig, dir)
	}
	tc, err := LoadConfig(dir)
	if err != nil {
		return fmt.Errorf("--use-teacher-d: --teacher %s is not a wkd run folder: %w", dir, err)
	}
	want, got := tc.D, t.cfg.D
	if want.Kind != got.Kind || want.NDF != got.NDF || want.NLayers != got.NLayers || want.Norm != got.Norm || want.InputNC != got.InputNC {
		return fmt.Errorf("%w: --use-teacher-d: the teacher's discriminator is %v, this run's is %v: give the teacher's --netD, --ndf %d, --n-layers-D and --norm",
			ErrConfig, want, got, want.NDF)
	}
	path, err := LatestCheckpoint(dir)
	if err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("--use-teacher-d: the teacher run %s has no checkpoint in %s to take its discriminator from", dir, filepath.Join(dir, ckptDir))
	}
	tensors, _, err := readCheckpoint(path)
	if err != nil {
		return fmt.Errorf("--use-teacher-d: %w", err)
	}
	ds := []namedNet{{"D", t.dA}}
	if t.cfg.Task == CycleGAN {
		ds = []namedNet{{"D_A", t.dA}, {"D_B", t.dB}}
	}
	for _, n := range ds {
		for _, p := range n.net.State() {
			src, ok := tensors[n.name+"/"+p.Name]
			if !ok || len(src.Data) != p.Numel() {
				return fmt.Errorf("%w: --use-teacher-d: %s lacks %s/%s %v", ErrCheckpoint, path, n.name, p.Name, p.Shape)
			}
		}
	}
	for _, n := range ds {
		for _, p := range n.net.State() {
			p.CopyFromHost(tensors[n.name+"/"+p.Name].Data)
		}
	}
	return nil
}
