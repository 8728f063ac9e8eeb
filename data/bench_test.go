package data

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkLoaderPix2Pix256 measures the reference's pix2pix input pipeline (512x256 A|B PNG,
// resize to 286, random 256 crop, flip) through the Loader.
func BenchmarkLoaderPix2Pix256(b *testing.B) {
	root := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	const files = 8
	for i := 0; i < files; i++ {
		writePNGFile(b, filepath.Join(root, "train", fmt.Sprintf("%d.png", i)), randomRGB(rng, 512, 256))
	}
	d, err := Open(DefaultPix2PixConfig(root))
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewLoader(d, LoaderConfig{BatchSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	idx := make([]int, b.N)
	for i := range idx {
		idx[i] = i % files
	}
	b.ResetTimer()
	s := l.Epoch(context.Background(), 0, idx)
	defer s.Close()
	for i := 0; i < b.N; i++ {
		if _, err := s.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
