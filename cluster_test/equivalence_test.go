package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEquivalence trains the same short distillation (global batch 4, same seed) in one
// process and on 1, 2 and 4 nodes: the nodes' final generators match the one-process ones
// within 1e-5 relative per tensor (leaving out the biases an InstanceNorm follows, whose
// gradient is rounding noise), and every replica's state digest is the same after every step.
//
// The KD distance is MSE (jobArgs). With L1, the result depends on the seed: the student's and
// the teacher's tanh outputs both saturate to exactly 1.0 on the white background, so many
// wavelet coefficients tie exactly, and L1's subgradient there (0, or +-1 once rounding
// differs by an ulp between one process and several) is a discrete choice. With seed 7 one
// step's G_A gradient then differs by about 1e-3 relative between 1 and 2 nodes, and the
// weights by up to 5e-3 after 6 steps; with MSE (a continuous gradient) seeds 3 and 7 both
// matches within 1e-5. PyTorch's L1 has the same subgradient at 0.
func TestEquivalence(t *testing.T) {
	const total = 6
	ref := filepath.Join(t.TempDir(), "one")
	runCmd(t, 60*time.Second, os.Environ(), append([]string{"distill"}, jobArgs(ref, total)...)...)
	inert := studentInert(t)
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			c := newCluster(t)
			ps, _ := c.startNodes(n, n, total)
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
				if st := steps(ls); len(st) != total || st[total-1] != total {
					t.Errorf("%s logged steps %v, want 1..%d", p.name, st, total)
				}
				d := digests(ls)
				for s := int64(1); s <= total; s++ {
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
			for _, g := range []string{"G_A", "G_B"} {
				want := loadWeights(t, filepath.Join(ref, g+".safetensors"))
				got := loadWeights(t, filepath.Join(rank0.out, g+".safetensors"))
				rel, inertAbs, worst := compareWeights(t, want, got, inert)
				t.Logf("%d nodes %s: worst relative difference %.3g (%s); inert biases (left out) differ by at most %.3g", n, g, rel, worst, inertAbs)
				if rel > 1e-5 {
					t.Errorf("%d nodes: %s tensor %s differs from one process by %.3g relative (> 1e-5)", n, g, worst, rel)
				}
			}
		})
	}
}
