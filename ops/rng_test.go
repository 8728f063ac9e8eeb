package ops

import (
	"errors"
	"math"
	"testing"
)

// draws takes a mixed sequence from g, as a run would: uniforms, normals, integers.
func draws(g *RNG, n int) []float64 {
	out := make([]float64, 0, 3*n)
	for range n {
		out = append(out, float64(g.Float32()), float64(g.NormFloat32()), float64(g.IntN(1000)))
	}
	return out
}

func TestRNGSeeded(t *testing.T) {
	a, b, c := draws(NewRNG(42), 100), draws(NewRNG(42), 100), draws(NewRNG(43), 100)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, draw %d: %v vs %v", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same > 10 {
		t.Errorf("seeds 42 and 43 agree on %d of %d draws", same, len(a))
	}
}

// TestRNGResume: a run that saves State and a fresh process that restores it draw the same
// values from there on.
func TestRNGResume(t *testing.T) {
	g := NewRNG(7)
	draws(g, 37)
	st := g.State()
	want := draws(g, 200)
	resumed := NewRNG(999)
	if err := resumed.SetState(st); err != nil {
		t.Fatal(err)
	}
	got := draws(resumed, 200)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("resumed draw %d: %v, want %v", i, got[i], want[i])
		}
	}
	// The dropout path reads the generator directly; it must resume too.
	m1, m2 := make([]float32, 101), make([]float32, 101)
	st = g.State()
	dropoutMask(m1, 0.5, g)
	if err := resumed.SetState(st); err != nil {
		t.Fatal(err)
	}
	dropoutMask(m2, 0.5, resumed)
	for i := range m1 {
		if m1[i] != m2[i] {
			t.Fatalf("resumed dropout mask differs at %d", i)
		}
	}
}

func TestRNGBadState(t *testing.T) {
	g := NewRNG(1)
	before := g.State()
	for _, b := range [][]byte{nil, []byte("pcg:short"), []byte("xyz:0123456789abcdef")} {
		if err := g.SetState(b); !errors.Is(err, ErrRNGState) {
			t.Errorf("SetState(%q) = %v, want ErrRNGState", b, err)
		}
	}
	if string(g.State()) != string(before) {
		t.Error("a failed SetState changed the stream")
	}
}

func TestRNGDistributions(t *testing.T) {
	g := NewRNG(3)
	const n = 200000
	var s, q, us float64
	for range n {
		u := g.Float32()
		if u < 0 || u >= 1 {
			t.Fatalf("Float32 = %v outside [0, 1)", u)
		}
		us += float64(u)
		v := float64(g.NormFloat32())
		s += v
		q += v * v
	}
	// Bounds are about 5 standard errors.
	if m := us / n; math.Abs(m-0.5) > 5*math.Sqrt(1.0/12/n) {
		t.Errorf("uniform mean %v, want 0.5", m)
	}
	if m, v := s/n, q/n-(s/n)*(s/n); math.Abs(m) > 5/math.Sqrt(n) || math.Abs(v-1) > 5*math.Sqrt(2.0/n) {
		t.Errorf("normal mean %v, variance %v; want 0, 1", m, v)
	}
	w := New(64, 3, 7, 7) // a conv weight, init normal(0, 0.02)
	g.FillNormal(w, 0, 0.02)
	s, q = 0, 0
	for _, v := range w.Data {
		s += float64(v)
		q += float64(v) * float64(v)
	}
	k := float64(w.Numel())
	if sd := math.Sqrt(q/k - (s/k)*(s/k)); math.Abs(sd-0.02) > 0.02*5/math.Sqrt(2*k) {
		t.Errorf("FillNormal(0, 0.02) deviation %v", sd)
	}
}
