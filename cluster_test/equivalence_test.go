package cluster_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"wkd/internal/safetensors"
	"wkd/models"
	"wkd/trainer"
)

// Tolerances of a distributed step against one process's step from the same state, relative
// per tensor. Only the order in which gradient sums round differs there: that stays below 1e-6
// on the gradient's running mean and 5e-4 on the weight change (seeds 3 to 9, both distances).
// The weight change is the noisier: Adam moves an element whose gradient is far below its
// epsilon (1e-8) by about lr * gradient / epsilon, which magnifies the rounding of that tiny
// gradient. A wrong gradient is far above both: averaging uneven shares unweighted, doubling
// the gradient on every rank, or dropping the KD term on all ranks but rank 0 make the
// gradient mean differ by 3e-2 to 1 and the weight change by 0.17 to 2.
const (
	gradTol   = 1e-5
	changeTol = 1e-2
)

// TestEquivalence checks that N nodes compute the gradient one process does. The same short
// CycleGAN distillation (global batch 4, seed 3) runs in one process and on 1, 2, 3 and 4
// nodes, where 3 nodes take uneven shares (2, 1, 1) whose gradients must be weighted, and on 3
// nodes again averaging after backward instead of during it; once with the default L1 KD
// distance and once with MSE.
//
// Each of the nodes' steps is compared with one process taking that step from the same state
// (the nodes' checkpoint of the step before, resumed with the one-process run's configuration;
// for step 1, the initialisation the seed fixes):
//   - the Adam first moment (exp_avg, a running mean of the averaged gradients), relative to
//     its largest value per tensor. It carries the gradient's scale, which Adam's update
//     divides out: a gradient twice too large moves the weights almost as the right one does;
//   - the weight change since initialisation, w - w0, relative to max|w - w0| per tensor (not
//     to max|w|: six steps of about lr each are a small part of w);
//   - the data position, so the nodes trained on the one process's samples.
//
// The first two leave out the biases an InstanceNorm follows (models.InertBiases): their exact
// gradient is zero, the computed one is rounding noise, and Adam turns it into steps of about
// lr. The replicas' state digests must also agree after every step.
//
// Why from the same state rather than along two free-running six-step trajectories: from the
// same weights, a share's forward pass is bitwise that of the same samples in one process, so
// every kink (ReLU, LeakyReLU, the L1 distance at 0) resolves alike. Along free trajectories the
// outputs drift apart by about 1e-6 a step, and the odd activation or L1 difference that lies
// that close to its kink takes the other side in one run; for many seeds, with either
// distance, some node count has such a flip within six steps, and the runs then part by up to
// 50%. So the free-running difference after six steps is logged, not checked. The L1
// distance's own ties are no issue either: with seed 3 no student wavelet coefficient equals
// the teacher's in these six steps (the smallest |difference| is 7e-7), and from the same
// state an exact tie would resolve alike.
//
// Six steps leave the image pools (50 fakes, filled per rank from its own share) short of
// full: a full pool hands D older fakes drawn at random, which no longer match one process's.
func TestEquivalence(t *testing.T) {
	const total = 6
	// Every step's checkpoint, so that each step can be redone from the one before.
	every := []string{"--checkpoint-every", "1", "--keep-checkpoints", fmt.Sprint(total)}
	for _, dist := range []string{"l1", "mse"} {
		t.Run(dist, func(t *testing.T) {
			flags := append([]string{"--kd-loss", dist}, every...)
			dir := t.TempDir()
			// The initial weights: one step whose learning rate moves no weight by an ulp.
			initRun, ref := filepath.Join(dir, "init"), filepath.Join(dir, "one")
			runCmd(t, 60*time.Second, os.Environ(), distillArgs(initRun, 1, slices.Concat(flags, []string{"--lr", "1e-30"})...)...)
			runCmd(t, 60*time.Second, os.Environ(), distillArgs(ref, total, flags...)...)
			w0 := loadCheckpoints(t, initRun)[1].tensors
			one := loadCheckpoints(t, ref)
			inert := inertParams(t, ref)
			for _, run := range []struct {
				n     int
				name  string
				extra []string
			}{
				{1, "nodes=1", nil}, {2, "nodes=2", nil}, {3, "nodes=3", nil}, {4, "nodes=4", nil},
				// Averaged after backward (syncGrads), not bucket by bucket during it.
				{3, "nodes=3,overlap=false", []string{"--overlap=false"}},
			} {
				t.Run(run.name, func(t *testing.T) {
					c := newCluster(t)
					ps, _ := c.startNodes(run.n, run.n, total, slices.Concat(flags, run.extra)...)
					rank0 := finishedRun(t, run.n, total, ps)
					got := loadCheckpoints(t, rank0.out)
					var grad, change worst
					for s := int64(1); s <= total; s++ {
						if got[s] == nil || one[s] == nil {
							t.Fatalf("no checkpoint of step %d (nodes: %v, one process: %v)", s, got[s] != nil, one[s] != nil)
						}
						if got[s].position != one[s].position {
							t.Errorf("after step %d the nodes are at %s, one process at %s", s, got[s].position, one[s].position)
						}
						want := one[1].tensors
						if s > 1 {
							want = stepFrom(t, ref, got[s-1])
						}
						g, ch := compareState(w0, want, got[s].tensors, inert)
						grad.add(g, s)
						change.add(ch, s)
					}
					if grad.tensor == "" || change.tensor == "" {
						t.Fatal("no weights or Adam moments compared: the checkpoints name their tensors otherwise")
					}
					fg, fch := compareState(w0, one[total].tensors, got[total].tensors, inert)
					t.Logf("%s, %s: from the same state, gradient mean within %.2g (%s), weight change within %.2g (%s); free-running after %d steps (not checked): %.2g and %.2g",
						dist, run.name, grad.rel, grad.where(), change.rel, change.where(), total, fg.rel, fch.rel)
					if grad.rel > gradTol {
						t.Errorf("%s: gradient mean (Adam exp_avg) differs from one process's by %.3g relative (> %g) at %s", run.name, grad.rel, gradTol, grad.where())
					}
					if change.rel > changeTol {
						t.Errorf("%s: weight change differs from one process's by %.3g relative (> %g) at %s", run.name, change.rel, changeTol, change.where())
					}
				})
			}
		})
	}
}

// distillArgs is `wkd distill` of the test job, with flags after the job's (a flag's last
// value wins).
func distillArgs(out string, steps int, flags ...string) []string {
	return append(append([]string{"distill"}, jobArgs(out, steps)...), flags...)
}

// finishedRun waits for n nodes to finish total steps, checks that each logged every step and
// that their replicas' digests agree on every step, and returns the node of rank 0 (which
// writes the checkpoints).
func finishedRun(t *testing.T, n, total int, ps []*proc) *proc {
	t.Helper()
	for _, p := range ps {
		if err := p.wait(t, 50*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", p.name, err, p.tail(30))
		}
	}
	var rank0 *proc
	var names []string
	var sets []map[int64]string
	var bounds []int64
	for _, p := range ps {
		ls := p.snapshot()
		if st := steps(ls); len(st) != total || st[total-1] != int64(total) {
			t.Errorf("%s logged steps %v, want 1..%d", p.name, st, total)
		}
		d := digests(ls)
		for s := int64(1); s <= int64(total); s++ {
			if d[s] == "" {
				t.Errorf("%s logged no state digest for step %d", p.name, s)
			}
		}
		names, sets, bounds = append(names, p.name), append(sets, d), append(bounds, -1)
		for _, l := range ls {
			if isView(n)(l) {
				if r, _ := l.int("rank"); r == 0 {
					rank0 = p
				}
			}
		}
	}
	if n > 1 {
		if got := sameDigests(t, names, sets, bounds); got != total {
			t.Errorf("digests compared on %d steps across nodes, want %d", got, total)
		}
	}
	if rank0 == nil {
		t.Fatal("no node logged a view with rank 0")
	}
	return rank0
}

// checkpoint is one checkpoint file of a run.
type checkpoint struct {
	path     string
	step     int64
	position string               // the data position of the next step (JSON)
	tensors  map[string][]float32 // by name
}

// loadCheckpoints reads every checkpoint of a run folder, by step.
func loadCheckpoints(t *testing.T, run string) map[int64]*checkpoint {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(run, "ckpt", "*.safetensors"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no checkpoints (%v)", run, err)
	}
	out := map[int64]*checkpoint{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ts, meta, err := safetensors.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		step, err := strconv.ParseInt(meta["wkd.step"], 10, 64)
		if err != nil {
			t.Fatalf("%s: step %q: %v", f, meta["wkd.step"], err)
		}
		c := &checkpoint{path: f, step: step, position: meta["wkd.position"], tensors: map[string][]float32{}}
		for n, x := range ts {
			c.tensors[n] = x.Data
		}
		out[step] = c
	}
	return out
}

// stepFrom runs one process of run's configuration for one step from checkpoint from (of
// another run), and returns the state after that step.
func stepFrom(t *testing.T, run string, from *checkpoint) map[string][]float32 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "resumed")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(run, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd(t, 60*time.Second, os.Environ(), "distill", "--resume-from", from.path, "--out", out,
		"--max-steps", fmt.Sprint(from.step+1), "--threads", "1", "--quiet", "--log-format", "json")
	c := loadCheckpoints(t, out)[from.step+1]
	if c == nil {
		t.Fatalf("resuming from %s wrote no checkpoint of step %d", from.path, from.step+1)
	}
	return c.tensors
}

// inertParams names the parameters, as checkpoints do ("G_A/model.4.bias"), of the biases an
// InstanceNorm follows in the run's generators and discriminators.
func inertParams(t *testing.T, run string) map[string]bool {
	t.Helper()
	cfg, err := trainer.LoadConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, side := range []struct {
		nets []string
		spec models.Spec
	}{{[]string{"G_A", "G_B"}, cfg.G}, {[]string{"D_A", "D_B"}, cfg.D}} {
		m, err := models.Build(side.spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range models.InertBiases(m) {
			for _, net := range side.nets {
				out[net+"/"+b] = true
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the networks have no inert biases: the test's job is not instance-normalized")
	}
	return out
}

// worst is the largest relative difference seen and where.
type worst struct {
	rel    float64
	tensor string
	step   int64
}

func (w *worst) add(o worst, step int64) {
	if o.rel > w.rel || w.tensor == "" {
		w.rel, w.tensor, w.step = o.rel, o.tensor, step
	}
}

func (w worst) where() string { return fmt.Sprintf("%s, step %d", w.tensor, w.step) }

// compareState compares two training states of the same run: the Adam first moments of every
// parameter (max|got - want| / max|want| per tensor) and the weights' change since w0
// (max|got - want| / max|want - w0| per tensor), leaving out inert parameters.
func compareState(w0, want, got map[string][]float32, inert map[string]bool) (grad, change worst) {
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var param string // "G_A/model.1.weight", of a weight or of its moment
		var base []float32
		out := &change
		switch parts := strings.SplitN(n, "/", 4); {
		case len(parts) == 2 && (strings.HasPrefix(n, "G_") || strings.HasPrefix(n, "D_")):
			param, base = n, w0[n]
		case len(parts) == 4 && parts[2] == "exp_avg": // optG/G_A/exp_avg/model.1.weight
			param, out, base = parts[1]+"/"+parts[3], &grad, make([]float32, len(want[n]))
		default:
			continue
		}
		if inert[param] {
			continue
		}
		a, b := want[n], got[n]
		if len(b) != len(a) || len(base) != len(a) {
			// A tensor missing or of another size: as different as can be.
			out.rel, out.tensor = math.Inf(1), n
			continue
		}
		var diff, scale float64
		for i := range a {
			diff = math.Max(diff, math.Abs(float64(b[i])-float64(a[i])))
			scale = math.Max(scale, math.Abs(float64(a[i])-float64(base[i])))
		}
		if scale == 0 {
			scale = 1
		}
		rel := diff / scale
		if math.IsNaN(rel) {
			rel = math.Inf(1)
		}
		if rel > out.rel || out.tensor == "" {
			out.rel, out.tensor = rel, n
		}
	}
	return grad, change
}
