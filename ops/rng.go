package ops

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// ErrRNGState is returned (wrapped) by RNG.SetState for bytes that are not an RNG state.
var ErrRNGState = errors.New("ops: bad RNG state")

// RNG is the one random stream of a run: weight init, dropout masks. It is a seeded PCG whose
// whole state is 16 bytes, so a checkpoint that saves State and a resumed run that calls
// SetState continue the same stream exactly. An RNG is not safe for concurrent use.
type RNG struct {
	pcg rand.PCG
	r   *rand.Rand
}

// NewRNG returns a stream determined by seed.
func NewRNG(seed uint64) *RNG {
	g := &RNG{}
	// The second PCG word is fixed so that one uint64 names the stream.
	g.pcg.Seed(seed, 0x9e3779b97f4a7c15)
	g.r = rand.New(&g.pcg)
	return g
}

// Uint64 returns 64 uniformly random bits.
func (g *RNG) Uint64() uint64 { return g.pcg.Uint64() }

// Float32 returns a uniform value in [0, 1).
func (g *RNG) Float32() float32 { return g.r.Float32() }

// IntN returns a uniform value in [0, n); it panics if n <= 0.
func (g *RNG) IntN(n int) int { return g.r.IntN(n) }

// NormFloat32 returns a standard normal value (mean 0, deviation 1).
func (g *RNG) NormFloat32() float32 { return float32(g.r.NormFloat64()) }

// FillNormal sets every element of t to a draw from normal(mean, std), e.g. (0, 0.02) for the
// reference's weight init.
func (g *RNG) FillNormal(t *Tensor, mean, std float32) {
	for i := range t.Data {
		t.Data[i] = mean + std*g.NormFloat32()
	}
}

// State returns the stream's position, for a checkpoint.
func (g *RNG) State() []byte {
	b, err := g.pcg.MarshalBinary()
	if err != nil {
		panic("ops: PCG state cannot be encoded: " + err.Error()) // cannot happen for a PCG
	}
	return b
}

// SetState moves the stream to a position State returned, so draws continue from there.
// On error the stream is unchanged.
func (g *RNG) SetState(b []byte) error {
	var p rand.PCG
	if err := p.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("%w (%d bytes): %v; the checkpoint's RNG entry is damaged or not from wkd", ErrRNGState, len(b), err)
	}
	g.pcg = p
	return nil
}
