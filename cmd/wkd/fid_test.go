package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wkd/data"
	"wkd/internal/safetensors"
	"wkd/metrics"
	"wkd/models"
	"wkd/ops"
	"wkd/trainer"
)

func readReport(t *testing.T, path string) metrics.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep metrics.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestEvalFIDAndKID: wkd eval --fid-weights puts FID and KID per model in report.json and
// report.html, equal to what the Inception features of the same generated and real images give
// here; says which weights produced them (random here, so not pytorch-fid's); caches the real
// images' features and gives the same numbers from the cache; without the flag says how to get
// them.
func TestEvalFIDAndKID(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "toy")
	const n, side = 6, 32
	writeDistinctTestSet(t, root, n, side)
	runs := []string{filepath.Join(dir, "teacher"), filepath.Join(dir, "student")}
	for k, run := range runs {
		writeRun(t, run, root, 8-4*k, uint64(20+k))
	}
	net := models.NewInception()
	net.InitRandom(4)
	weights := filepath.Join(dir, "inception.safetensors")
	if err := net.Save(weights, nil); err != nil {
		t.Fatal(err)
	}
	feats := writeFeatures(t, dir)
	cache := filepath.Join(dir, "cache")
	eval := func(out string, extra ...string) metrics.Report {
		args := append([]string{"--runs", strings.Join(runs, ","), "--features", feats, "--out", out,
			"--speed-size", "32", "--speed-reps", "1", "--grid-rows", "2"}, extra...)
		if err := runEval(args); err != nil {
			t.Fatal(err)
		}
		return readReport(t, filepath.Join(out, "report.json"))
	}
	fidArgs := []string{"--fid-weights", weights, "--fid-cache", cache, "--kid-subsets", "4", "--fid-batch", "4"}
	rep := eval(filepath.Join(dir, "r1"), fidArgs...)

	inc := rep.Inception
	sum, _ := fileSHA256(weights)
	if inc == nil || inc.File != weights || inc.SHA256 != sum || inc.Published || inc.Dims != 2048 || inc.KIDSubsets != 4 || inc.KIDSubsetSize != n {
		t.Fatalf("report's inception %+v, want the file, its hash, not published, 2048-d, 4 subsets of %d", inc, n)
	}
	if rep.FIDAbsent != "" {
		t.Errorf("fid_absent %q beside FIDs", rep.FIDAbsent)
	}
	cached, _ := filepath.Glob(filepath.Join(cache, "real-*.safetensors"))
	if len(cached) != 1 || !strings.Contains(cached[0], sum[:16]) || !strings.Contains(cached[0], strings.ReplaceAll(rep.TestSetDigest, ":", "-")) {
		t.Errorf("cache holds %v, want one file named by the test set digest %s and the weights' hash", cached, rep.TestSetDigest)
	}

	// The same numbers from the features of the same images computed here.
	dcfg := data.DefaultPix2PixConfig(root)
	dcfg.Phase, dcfg.Train = "test", false
	dcfg.LoadSize, dcfg.CropSize = side, side
	ds, err := data.Open(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	var reals []metrics.Image
	outs := make([][]metrics.Image, len(runs))
	tp := ops.NewTape()
	tp.SetNoGrad(true)
	for k, run := range runs {
		cfg, _ := trainer.LoadConfig(run)
		g, _ := models.Build(cfg.G)
		if _, err := models.Load(filepath.Join(run, "G.safetensors"), g); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			s, err := ds.Load(0, 0, i)
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				reals = append(reals, metrics.Image{C: 3, H: side, W: side, Pix: s.B})
			}
			tp.Reset()
			y := g.Forward(tp, ops.FromData(s.A, 1, 3, side, side), false)
			outs[k] = append(outs[k], metrics.Image{C: 3, H: side, W: side, Pix: append([]float32(nil), y.Data...)})
		}
	}
	realF := metrics.InceptionFeatures(net, reals, 2048, 3, nil)
	realG, _ := metrics.Fit(to64(realF))
	for k, r := range rep.Results {
		f := metrics.InceptionFeatures(net, outs[k], 2048, 5, nil)
		g, _ := metrics.Fit(to64(f))
		fid, _ := metrics.FrechetDistance(g, realG)
		kid, _ := metrics.KernelDistance(f, realF, metrics.KIDConfig{Subsets: 4, SubsetSize: 1000, Seed: 1})
		if r.FID == nil || r.KID == nil {
			t.Fatalf("%s: FID %v, KID %v", r.Name, r.FID, r.KID)
		}
		t.Logf("%s: FID %.4f, KID %.5f ± %.5f (random Inception weights)", r.Name, *r.FID, r.KID.Mean, r.KID.Std)
		if math.Abs(*r.FID-fid) > 1e-6*fid || math.Abs(r.KID.Mean-kid.Mean) > 1e-9 || math.Abs(r.KID.Std-kid.Std) > 1e-9 {
			t.Errorf("%s: report FID %v KID %v±%v, computed here %v and %v±%v", r.Name, *r.FID, r.KID.Mean, r.KID.Std, fid, kid.Mean, kid.Std)
		}
		if !(fid > 0) {
			t.Errorf("%s: FID %v, want positive (an untrained generator against the targets)", r.Name, fid)
		}
	}
	html, _ := os.ReadFile(filepath.Join(dir, "r1", "report.html"))
	for _, want := range []string{"<th>FID ↓</th>", "KID x 1000", "so not comparable with published FIDs", sum[:12]} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}

	// From the cache: the same numbers. A cache file of other content is not used.
	again := eval(filepath.Join(dir, "r2"), fidArgs...)
	for k := range rep.Results {
		if *again.Results[k].FID != *rep.Results[k].FID || *again.Results[k].KID != *rep.Results[k].KID {
			t.Errorf("%s: FID %v from the cache, %v computed", rep.Results[k].Name, *again.Results[k].FID, *rep.Results[k].FID)
		}
	}

	// The cache is what the second run read: features changed in it change the FIDs.
	tensors, meta, err := safetensors.Read(cached[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range tensors["features"].Data {
		tensors["features"].Data[i] *= 2
	}
	if err := safetensors.WriteFile(cached[0], tensors, meta); err != nil {
		t.Fatal(err)
	}
	tampered := eval(filepath.Join(dir, "r2b"), fidArgs...)
	if *tampered.Results[0].FID == *rep.Results[0].FID {
		t.Error("FID unchanged after the cached real features were changed: the cache is not read")
	}
	// Other weights do not take those features: a cache entry per weights file.
	net.InitRandom(5)
	other := filepath.Join(dir, "other.safetensors")
	net.Save(other, nil)
	otherRep := eval(filepath.Join(dir, "r2c"), "--fid-weights", other, "--fid-cache", cache, "--kid-subsets", "4")
	if n, _ := filepath.Glob(filepath.Join(cache, "real-*.safetensors")); len(n) != 2 || *otherRep.Results[0].FID == *tampered.Results[0].FID {
		t.Errorf("other weights: %d cache files, FID %v (tampered cache %v)", len(n), *otherRep.Results[0].FID, *tampered.Results[0].FID)
	}

	none := eval(filepath.Join(dir, "r3"))
	if none.Inception != nil || !strings.Contains(none.FIDAbsent, "--fid-weights") || !strings.Contains(none.FIDAbsent, "pt_inception-2015-12-05-6726825d.pth") || none.Results[0].FID != nil {
		t.Errorf("without --fid-weights: inception %v, fid_absent %q, FID %v", none.Inception, none.FIDAbsent, none.Results[0].FID)
	}
	// summarize carries FID and KID over, and refuses to mix reports with and without them.
	md := filepath.Join(dir, "summary.md")
	if err := runSummarize([]string{"--out", md, filepath.Join(dir, "r1", "report.json"), filepath.Join(dir, "r2", "report.json")}); err != nil {
		t.Fatal(err)
	}
	mdText, _ := os.ReadFile(md)
	if !strings.Contains(string(mdText), "| FID ↓ | KID x 1000 ↓ |") || !strings.Contains(string(mdText), fmt.Sprintf("| teacher | 2 |")) ||
		!strings.Contains(string(mdText), fmt.Sprintf("%.2f ± 0.00", *rep.Results[0].FID)) {
		t.Errorf("summary.md lacks the FID and KID columns or the teacher's FID %.2f:\n%s", *rep.Results[0].FID, mdText)
	}
	err = runSummarize([]string{"--out", md, filepath.Join(dir, "r1", "report.json"), filepath.Join(dir, "r3", "report.json")})
	if err == nil || !strings.Contains(err.Error(), "--fid-weights") {
		t.Errorf("summarize of a report with FID and one without: err = %v, want one naming --fid-weights", err)
	}
	html, _ = os.ReadFile(filepath.Join(dir, "r3", "report.html"))
	if strings.Contains(string(html), "<th>FID") || !strings.Contains(string(html), "No FID or KID: pass --fid-weights") {
		t.Error("report.html without --fid-weights does not say FID is absent and how to get it")
	}
}

// TestEvalRefusesBadFIDWeights: a file that is not the Inception's weights fails before any
// image is generated, naming the flag, the file and what is wanted; nothing is written.
func TestEvalRefusesBadFIDWeights(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "toy")
	writeAlignedTestSet(t, root, 2, 32)
	run := filepath.Join(dir, "run")
	writeRun(t, run, root, 4, 1)
	feats := writeFeatures(t, dir)
	garbage := filepath.Join(dir, "garbage.pth")
	os.WriteFile(garbage, []byte("PK\x03\x04 not really a zip"), 0o644)
	other := filepath.Join(dir, "G.safetensors") // a generator's weights, not Inception's
	g, _ := models.Build(models.Spec{Kind: models.UNet, InputNC: 3, OutputNC: 3, NGF: 4, Norm: models.Instance, NumDowns: 5})
	models.Save(other, g, nil)
	out := filepath.Join(dir, "report")
	for _, c := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.pth"), "missing.pth"},
		{garbage, "not a PyTorch state_dict"},
		{other, "Conv2d_1a_3x3.conv.weight"},
	} {
		err := runEval([]string{"--runs", run, "--features", feats, "--out", out, "--speed-size", "32", "--fid-weights", c.file})
		if err == nil || !strings.Contains(err.Error(), "--fid-weights") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--fid-weights %s: err = %v, want one naming the flag and %q", c.file, err, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--fid-weights %s: a refused eval wrote its --out folder", c.file)
		}
	}
}
