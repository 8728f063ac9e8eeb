package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"wkd/internal/safetensors"
	"wkd/metrics"
	"wkd/models"
)

// fidSetup computes FID and KID for wkd eval: the Inception network, its weights' hash, the
// real images' features (cached per test set and weights) and the KID subsets.
type fidSetup struct {
	net      *models.Inception
	info     metrics.InceptionInfo
	cacheDir string
	batch    int
	kid      metrics.KIDConfig
	realFeat [][]float32
	realG    metrics.Gaussian
}

// loadFID reads the weights before any image is generated, so a wrong file fails at once.
func loadFID(weights, cacheDir string, batch int, kid metrics.KIDConfig) (*fidSetup, error) {
	net, err := models.LoadInception(weights)
	if err != nil {
		return nil, fmt.Errorf("--fid-weights: %w", err)
	}
	sum, err := fileSHA256(weights)
	if err != nil {
		return nil, fmt.Errorf("--fid-weights: %w", err)
	}
	info := metrics.InceptionInfo{Network: "Inception-v3 (pytorch-fid's FID variant)", File: weights, SHA256: sum,
		Published: strings.HasPrefix(sum, metrics.PublishedInceptionPrefix), Dims: 2048,
		KIDSubsets: kid.Subsets, KIDSubsetSize: kid.SubsetSize}
	return &fidSetup{net: net, info: info, cacheDir: cacheDir, batch: batch, kid: kid}, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// real computes (or reads from the cache) the real images' features and records the network
// in the report.
func (s *fidSetup) real(reals []metrics.Image, rep *metrics.Report) error {
	digest := metrics.Digest(reals)
	path := filepath.Join(s.cacheDir, fmt.Sprintf("real-%s-%.16s-%d.safetensors", strings.ReplaceAll(digest, ":", "-"), s.info.SHA256, s.info.Dims))
	if f, ok := readCachedFeatures(path, len(reals), s.info.Dims); ok {
		s.realFeat = f
		fmt.Fprintf(os.Stderr, "real images' Inception features from %s\n", path)
	} else {
		s.realFeat = metrics.InceptionFeatures(s.net, reals, s.info.Dims, s.batch, progressLine("Inception features, real images"))
		if err := writeCachedFeatures(path, s.realFeat, digest, s.info.SHA256); err != nil {
			fmt.Fprintf(os.Stderr, "warning: the real images' features were not cached: %v\n", err)
		}
	}
	var err error
	if s.realG, err = metrics.Fit(to64(s.realFeat)); err != nil {
		return fmt.Errorf("FID: %w", err)
	}
	// KID subsets cannot be larger than the test set: record what is used.
	s.info.KIDSubsetSize = min(s.kid.SubsetSize, len(reals))
	info := s.info
	rep.Inception = &info
	return nil
}

// model adds the FID and KID of one model's outputs to r.
func (s *fidSetup) model(name string, outs []metrics.Image, r *metrics.Result) error {
	feat := metrics.InceptionFeatures(s.net, outs, s.info.Dims, s.batch, progressLine("Inception features, "+name))
	g, err := metrics.Fit(to64(feat))
	if err != nil {
		return fmt.Errorf("FID of %s: %w", name, err)
	}
	fid, err := metrics.FrechetDistance(g, s.realG)
	if err != nil {
		return fmt.Errorf("FID of %s: %w", name, err)
	}
	kid, err := metrics.KernelDistance(feat, s.realFeat, s.kid)
	if err != nil {
		return fmt.Errorf("KID of %s: %w", name, err)
	}
	r.FID = &fid
	r.KID = &metrics.KIDValue{Mean: kid.Mean, Std: kid.Std}
	return nil
}

func to64(rows [][]float32) [][]float64 {
	out := make([][]float64, len(rows))
	for i, r := range rows {
		out[i] = make([]float64, len(r))
		for j, v := range r {
			out[i][j] = float64(v)
		}
	}
	return out
}

const cachedFeatures = "features"

// readCachedFeatures returns the cached features when the file holds exactly n rows of dims.
func readCachedFeatures(path string, n, dims int) ([][]float32, bool) {
	tensors, _, err := safetensors.Read(path)
	if err != nil {
		return nil, false
	}
	t, ok := tensors[cachedFeatures]
	if !ok || len(t.Shape) != 2 || t.Shape[0] != n || t.Shape[1] != dims || len(t.Data) != n*dims {
		return nil, false
	}
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = t.Data[i*dims : (i+1)*dims]
	}
	return rows, true
}

func writeCachedFeatures(path string, rows [][]float32, digest, weights string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	d := len(rows[0])
	flat := make([]float32, 0, len(rows)*d)
	for _, r := range rows {
		flat = append(flat, r...)
	}
	return safetensors.WriteFile(path, map[string]safetensors.Tensor{cachedFeatures: {Shape: []int{len(rows), d}, Data: flat}},
		map[string]string{"test_set_digest": digest, "weights_sha256": weights})
}

// progressLine reports done/total with an ETA on stderr: rewritten in place on a terminal,
// a line at each tenth otherwise.
func progressLine(label string) func(done, total int) {
	start := time.Now()
	term := isTerminal(os.Stderr)
	lastTenth := -1
	return func(done, total int) {
		elapsed := time.Since(start)
		eta := time.Duration(float64(elapsed) / float64(done) * float64(total-done)).Round(time.Second)
		line := fmt.Sprintf("%s: %d/%d, %s elapsed, ETA %s", label, done, total, elapsed.Round(time.Second), eta)
		switch {
		case term:
			fmt.Fprintf(os.Stderr, "\r%s\033[K", line)
			if done == total {
				fmt.Fprintln(os.Stderr)
			}
		case done*10/total > lastTenth || done == total:
			lastTenth = done * 10 / total
			fmt.Fprintln(os.Stderr, line)
		}
	}
}
