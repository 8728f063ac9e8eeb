package data

import (
	"math/bits"
	"math/rand/v2"
)

// sampleRand is the random source of one sample in one epoch. It is built from PCG-DXSM, whose
// output is specified, and bounded draws are our own, so the stream does not change with Go
// releases (math/rand/v2 does not promise stable IntN/Perm algorithms).
type sampleRand struct{ pcg *rand.PCG }

func mix64(x uint64) uint64 { // splitmix64 finaliser
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func newSampleRand(seed uint64, epoch, index int) sampleRand {
	return sampleRand{rand.NewPCG(mix64(seed^0x5eed), mix64(uint64(epoch)<<32^uint64(uint32(index))^mix64(uint64(index)>>32)))}
}

// intn returns a uniform int in [0, n) by Lemire's multiply-shift with rejection.
func (r sampleRand) intn(n int) int {
	if n <= 1 {
		return 0
	}
	bound := uint64(n)
	thresh := -bound % bound
	for {
		hi, lo := bits.Mul64(r.pcg.Uint64(), bound)
		if lo >= thresh {
			return int(hi)
		}
	}
}

// coin returns true with probability 1/2.
func (r sampleRand) coin() bool { return r.pcg.Uint64()>>63 == 1 }
