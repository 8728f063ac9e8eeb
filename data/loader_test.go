package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// loaderDataset is an unaligned training set of n random 12x12 images per domain, with crop and
// flip, so batches depend on the seed.
func loaderDataset(t *testing.T, n int) *Dataset {
	t.Helper()
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(n), 9))
	for i := 0; i < n; i++ {
		writePNGFile(t, filepath.Join(root, "trainA", fmt.Sprintf("%03d.png", i)), randomRGB(rng, 12, 12))
		writePNGFile(t, filepath.Join(root, "trainB", fmt.Sprintf("%03d.png", i)), randomRGB(rng, 12, 12))
	}
	cfg := DefaultCycleGANConfig(root)
	cfg.LoadSize, cfg.CropSize = 10, 8
	return mustOpen(t, cfg)
}

func collect(t *testing.T, s *Batches) []*Batch {
	t.Helper()
	defer s.Close()
	var out []*Batch
	for {
		b, err := s.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

func mustLoader(t *testing.T, d *Dataset, cfg LoaderConfig) *Loader {
	t.Helper()
	l, err := NewLoader(d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Batches hold the samples of Dataset.Load for the same (seed, epoch, index), in the order
// given, whatever the number of workers or the prefetch depth.
func TestLoaderMatchesSequentialLoads(t *testing.T) {
	d := loaderDataset(t, 10)
	order := []int{7, 2, 9, 0, 4, 4, 1, 8, 3, 6, 5}
	var ref []*Batch
	for _, wp := range [][2]int{{1, 1}, {4, 2}, {8, 5}} {
		l := mustLoader(t, d, LoaderConfig{Seed: 3, Workers: wp[0], Prefetch: wp[1], BatchSize: 4})
		got := collect(t, l.Epoch(context.Background(), 2, order))
		if len(got) != 3 || got[2].N != 3 || got[2].AShape != [4]int{3, 3, 8, 8} {
			t.Fatalf("workers %d: %d batches, last %+v", wp[0], len(got), got[len(got)-1].AShape)
		}
		for bi, b := range got {
			for j, idx := range b.Indices {
				s := mustLoad(t, d, 3, 2, idx)
				n := len(s.A)
				if !slices.Equal(b.A[j*n:(j+1)*n], s.A) || !slices.Equal(b.B[j*n:(j+1)*n], s.B) || b.APaths[j] != s.APath || b.BPaths[j] != s.BPath {
					t.Fatalf("workers %d, batch %d slot %d (index %d) differs from Dataset.Load", wp[0], bi, j, idx)
				}
			}
		}
		if ref == nil {
			ref = got
		}
		for bi := range got {
			if !slices.Equal(got[bi].A, ref[bi].A) {
				t.Fatalf("workers %d changed batch %d", wp[0], bi)
			}
		}
	}
	other := collect(t, mustLoader(t, d, LoaderConfig{Seed: 4, BatchSize: 4}).Epoch(context.Background(), 2, order))
	if slices.Equal(other[0].A, ref[0].A) {
		t.Fatal("another seed gave the same augmentation")
	}
}

func TestLoaderDropLastAndEmptyShares(t *testing.T) {
	d := loaderDataset(t, 5)
	l := mustLoader(t, d, LoaderConfig{BatchSize: 2, DropLast: true})
	if got := collect(t, l.Epoch(context.Background(), 0, []int{0, 1, 2, 3, 4})); len(got) != 2 {
		t.Fatalf("drop-last: %d batches, want 2", len(got))
	}
	got := collect(t, l.EpochBatches(context.Background(), 0, [][]int{{3}, {}, {0, 1, 2}}))
	if len(got) != 3 || got[1].N != 0 || len(got[1].A) != 0 || got[2].N != 3 {
		t.Fatalf("explicit batches: %d, sizes %d %d %d", len(got), got[0].N, got[1].N, got[2].N)
	}
}

func TestLoaderStopsAtCorruptFileNamingIt(t *testing.T) {
	d := loaderDataset(t, 6)
	as, _ := d.Paths()
	writeRaw(t, as[4], []byte("garbage"))
	l := mustLoader(t, d, LoaderConfig{BatchSize: 2, Workers: 3})
	s := l.Epoch(context.Background(), 0, []int{0, 1, 2, 3, 4, 5})
	defer s.Close()
	for i := 0; i < 2; i++ {
		if _, err := s.Next(); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	_, err := s.Next()
	expectErr(t, err, ErrCorruptImage, as[4])
	if _, err2 := s.Next(); err2 != err {
		t.Fatalf("after the error Next returned %v", err2)
	}
}

// The queue is bounded: with nobody consuming, only Prefetch batches get decoded; each Next
// lets one more in.
func TestLoaderPrefetchIsBounded(t *testing.T) {
	d := loaderDataset(t, 12)
	l := mustLoader(t, d, LoaderConfig{BatchSize: 1, Workers: 4, Prefetch: 3})
	s := l.Epoch(context.Background(), 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	defer s.Close()
	deadline := time.Now().Add(2 * time.Second)
	for l.loaded.Load() < 3 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	time.Sleep(50 * time.Millisecond) // give a wrongly unbounded dispatcher time to run ahead
	if n := l.loaded.Load(); n != 3 {
		t.Fatalf("%d samples decoded with no consumer, want the prefetch depth 3", n)
	}
	for i := 0; i < 12; i++ {
		b, err := s.Next()
		if err != nil || b.Indices[0] != i {
			t.Fatalf("batch %d: %v %v", i, b, err)
		}
		if n := l.loaded.Load(); n > int64(i+1+3+1) { // consumed, queued, one being dispatched
			t.Fatalf("after %d batches, %d decoded: the queue is not bounded", i+1, n)
		}
	}
}

func TestLoaderCloseAndCancelStopWorkers(t *testing.T) {
	d := loaderDataset(t, 8)
	before := runtime.NumGoroutine()
	l := mustLoader(t, d, LoaderConfig{BatchSize: 1, Workers: 4, Prefetch: 2})
	idx := []int{0, 1, 2, 3, 4, 5, 6, 7}

	s := l.Epoch(context.Background(), 0, idx)
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if _, err := s.Next(); !errors.Is(err, ErrLoaderClosed) {
		t.Fatalf("Next after Close: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s = l.Epoch(ctx, 0, idx)
	cancel()
	var err error
	for err == nil {
		_, err = s.Next()
	}
	if !errors.Is(err, ErrLoaderClosed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v, want ErrLoaderClosed wrapping context.Canceled", err)
	}
	s.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left running (%d before)", n-before, before)
	}
}

// Released batches lend their buffers to later ones; the values are those of fresh buffers.
func TestLoaderReleaseReusesBuffers(t *testing.T) {
	d := loaderDataset(t, 6)
	idx := []int{5, 4, 3, 2, 1, 0}
	fresh := collect(t, mustLoader(t, d, LoaderConfig{Seed: 1, BatchSize: 2}).Epoch(context.Background(), 1, idx))
	l := mustLoader(t, d, LoaderConfig{Seed: 1, BatchSize: 2, Prefetch: 1, Workers: 2})
	s := l.Epoch(context.Background(), 0, []int{0, 1})
	b0, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	arr := &b0.A[0]
	l.Release(b0)
	s = l.Epoch(context.Background(), 1, idx)
	defer s.Close()
	reused := false
	for i := 0; ; i++ {
		b, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		reused = reused || &b.A[0] == arr
		if !slices.Equal(b.A, fresh[i].A) || !slices.Equal(b.B, fresh[i].B) || !slices.Equal(b.APaths, fresh[i].APaths) {
			t.Fatalf("batch %d differs from a batch in fresh buffers", i)
		}
		l.Release(b)
	}
	if !reused {
		t.Fatal("the released buffers were not reused")
	}
}
