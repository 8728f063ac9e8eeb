package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two hand-written seeds of a pix2pix evaluation on 3 test images. Band energies are chosen so
// the ratios to the real images' are round: real high bands 2, 2, 1 (total 5), LL 10.
//
//	                 PSNR per image          FD     high bands (ratio)
//	seed 1  none     20 21 22  (21)          14     1.0 1.0 0.5  (0.5)
//	        pixel    20 22 24  (22)          12     1.2 1.2 0.6  (0.6)
//	        wavelet  21 23 25  (23)          10     1.8 1.8 0.9  (0.9)
//	seed 2  none     21 22 23  (22)          16     1.0 1.0 0.5  (0.5)
//	        pixel    21 23 25  (23)          12     1.4 1.4 0.7  (0.7)
//	        wavelet  22 24 26  (24)          11     1.6 1.6 0.8  (0.8)
//
// wavelet - pixel: PSNR +1 on every image, SSIM 0, L1 -0.01, FD -2 and -1, spectrum 0.
// wavelet - none: PSNR 1, 2, 3 on the three images in both seeds.
const seed1JSON = `{
  "dataset": "datasets/toy", "task": "pix2pix", "paired": true, "images": 3, "size": [32, 32], "speed_size": 64, "threads": 2,
  "feature_network": {"name": "texture-convnet", "dataset": "texture-classes", "classes": ["metal", "stone"], "channels": 3, "size": 64, "file": "runs/tex.safetensors", "test_accuracy": 91.5},
  "feature_net": "runs/tex.safetensors", "feature_net_accuracy": 91.5, "test_set_digest": "fnv64a:0123",
  "bands": ["LH1", "HL1", "HH1", "LL1"], "real_band_energies": [2, 2, 1, 10],
  "results": [
    {"name": "teacher", "params": 1000, "macs": 2000000, "mac_compression": 1, "speedup": 1,
     "psnr": 26, "ssim": 0.8, "l1": 0.05, "per_image": {"psnr": [24, 26, 28], "ssim": [0.8, 0.8, 0.8], "l1": [0.05, 0.05, 0.05]},
     "frechet_distance": 5, "spectrum_distance": 0.1, "band_energies": [2, 2, 1, 10]},
    {"name": "student none", "params": 100, "macs": 200000, "mac_compression": 10, "speedup": 4,
     "psnr": 21, "ssim": 0.6, "l1": 0.1, "per_image": {"psnr": [20, 21, 22], "ssim": [0.6, 0.6, 0.6], "l1": [0.1, 0.1, 0.1]},
     "frechet_distance": 14, "spectrum_distance": 0.3, "band_energies": [1, 1, 0.5, 10]},
    {"name": "student pixel", "params": 100, "macs": 200000, "mac_compression": 10, "speedup": 4,
     "psnr": 22, "ssim": 0.7, "l1": 0.08, "per_image": {"psnr": [20, 22, 24], "ssim": [0.7, 0.7, 0.7], "l1": [0.08, 0.08, 0.08]},
     "frechet_distance": 12, "spectrum_distance": 0.25, "band_energies": [1.2, 1.2, 0.6, 10]},
    {"name": "student wavelet", "params": 100, "macs": 200000, "mac_compression": 10, "speedup": 4,
     "psnr": 23, "ssim": 0.7, "l1": 0.07, "per_image": {"psnr": [21, 23, 25], "ssim": [0.7, 0.7, 0.7], "l1": [0.07, 0.07, 0.07]},
     "frechet_distance": 10, "spectrum_distance": 0.25, "band_energies": [1.8, 1.8, 0.9, 10]}
  ]
}`

const seed2JSON = `{
  "dataset": "datasets/toy", "task": "pix2pix", "paired": true, "images": 3, "size": [32, 32], "speed_size": 64, "threads": 2,
  "feature_network": {"name": "texture-convnet", "dataset": "texture-classes", "classes": ["metal", "stone"], "channels": 3, "size": 64, "file": "runs/tex.safetensors", "test_accuracy": 91.5},
  "feature_net": "runs/tex.safetensors", "feature_net_accuracy": 91.5, "test_set_digest": "fnv64a:0123",
  "bands": ["LH1", "HL1", "HH1", "LL1"], "real_band_energies": [2, 2, 1, 10],
  "results": [
    {"name": "teacher", "params": 1000, "macs": 2000000, "mac_compression": 1, "speedup": 1,
     "psnr": 26, "ssim": 0.8, "l1": 0.05, "per_image": {"psnr": [24, 26, 28], "ssim": [0.8, 0.8, 0.8], "l1": [0.05, 0.05, 0.05]},
     "frechet_distance": 5, "spectrum_distance": 0.1, "band_energies": [2, 2, 1, 10]},
    {"name": "student none", "params": 100, "macs": 200000, "mac_compression": 10, "speedup": 4,
     "psnr": 22, "ssim": 0.62, "l1": 0.09, "per_image": {"psnr": [21, 22, 23], "ssim": [0.62, 0.62, 0.62], "l1": [0.09, 0.09, 0.09]},
     "frechet_distance": 16, "spectrum_distance": 0.32, "band_energies": [1, 1, 0.5, 10]},
    {"name": "student pixel", "params": 100, "macs": 200000, "mac_compression": 10, "speedup": 4,
     "psnr": 23, "ssim": 0.72, "l1": 0.07, "per_image": {"psnr": [21, 23, 25], "ssim": [0.72, 0.72, 0.72], "l1": [0.07, 0.07, 0.07]},
     "frechet_distance": 12, "spectrum_distance": 0.27, "band_energies": [1.4, 1.4, 0.7, 10]},
    {"name": "student wavelet", "params": 100, "macs": 200000, "mac_compression": 10, "speedup": 4,
     "psnr": 24, "ssim": 0.72, "l1": 0.06, "per_image": {"psnr": [22, 24, 26], "ssim": [0.72, 0.72, 0.72], "l1": [0.06, 0.06, 0.06]},
     "frechet_distance": 11, "spectrum_distance": 0.27, "band_energies": [1.6, 1.6, 0.8, 10]}
  ]
}`

func writeReports(t *testing.T, texts ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, text := range texts {
		p := filepath.Join(dir, "seed"+string(rune('1'+i)), "report.json")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func summarize(t *testing.T, args ...string) (md string, js map[string]any) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "summary.md")
	if err := runSummarize(append([]string{"--out", out}, args...)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(filepath.Join(filepath.Dir(out), "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &js); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	return string(b), js
}

func TestSummarizeHandWrittenReports(t *testing.T) {
	md, js := summarize(t, writeReports(t, seed1JSON, seed2JSON)...)
	want := []string{
		"datasets/toy (pix2pix), 2 seeds, 3 test images at 32x32; speedup measured at 64px\n",
		"Frechet distance on the features of texture-convnet trained on texture-classes (2 classes, 3x64x64 input, test accuracy 91.5%).\n",
		"| model | n | params | MACs | compression (MACs) | speedup | PSNR ↑ | SSIM ↑ | L1 ↓ | Frechet ↓ | spectrum dist ↓ | high-band energy / real |\n",
		// PSNR 23, 24; SSIM 0.70, 0.72; L1 0.07, 0.06; FD 10, 11; spectrum 0.25, 0.27; ratio 0.9, 0.8.
		"| student wavelet | 2 | 100 | 2e+05 | 10.00x | 4.00x ± 0.00 | 23.50 ± 0.71 | 0.7100 ± 0.0141 | 0.0650 ± 0.0071 | 10.50 ± 0.71 | 0.260 ± 0.014 | 0.850 ± 0.071 |\n",
		"| student none | 2 | 100 | 2e+05 | 10.00x | 4.00x ± 0.00 | 21.50 ± 0.71 | 0.6100 ± 0.0141 | 0.0950 ± 0.0071 | 15.00 ± 1.41 | 0.310 ± 0.014 | 0.500 ± 0.000 |\n",
		"| teacher | 2 | 1e+03 | 2e+06 | 1.00x | 1.00x ± 0.00 | 26.00 ± 0.00 | 0.8000 ± 0.0000 | 0.0500 ± 0.0000 | 5.00 ± 0.00 | 0.100 ± 0.000 | 1.000 ± 0.000 |\n",
		// A constant difference: a zero-width interval at it.
		"| student wavelet | student pixel | PSNR | higher | +1.000 | **[+1.000, +1.000]** | seeds and test images | **student wavelet better** |\n",
		"| student wavelet | student pixel | SSIM | higher | +0.00000 | [+0.00000, +0.00000] | seeds and test images | no clear difference |\n",
		"| student wavelet | student pixel | L1 | lower | -0.01000 | **[-0.01000, -0.01000]** | seeds and test images | **student wavelet better** |\n",
		// Seeds only: the mean of two draws from {-2, -1} is -2 or -1 a quarter of the time each.
		"| student wavelet | student pixel | Frechet | lower | -1.500 | **[-2.000, -1.000]** | seeds | **student wavelet better** |\n",
		"| student wavelet | student pixel | spectrum dist | lower | +0.00000 | [+0.00000, +0.00000] | seeds | no clear difference |\n",
		// |ln 0.9| - |ln 0.6| = -0.4055, |ln 0.8| - |ln 0.7| = -0.1335.
		"| student wavelet | student pixel | high-band energy / real | closer to 1 | -0.2695 | **[-0.4055, -0.1335]** | seeds | **student wavelet better** |\n",
		// Images resampled: the mean of three draws from {1, 2, 3} is 1 or 3 with 1/27 > 2.5%.
		"| student wavelet | student none | PSNR | higher | +2.000 | **[+1.000, +3.000]** | seeds and test images | **student wavelet better** |\n",
		"| model | LH1 | HL1 | HH1 | LL1 |\n",
		"| student pixel | 0.650 | 0.650 | 0.650 | 1.000 |\n",
		"| student wavelet | 0.850 | 0.850 | 0.850 | 1.000 |\n",
	}
	for _, w := range want {
		if !strings.Contains(md, w) {
			t.Errorf("summary.md lacks\n%s", w)
		}
	}
	if t.Failed() {
		t.Logf("summary.md:\n%s", md)
	}
	// Only the default pairs: wavelet against pixel and against none, 6 metrics each.
	cmps := js["comparisons"].([]any)
	if len(cmps) != 12 {
		t.Errorf("%d comparisons, want 12", len(cmps))
	}
	fd := cmps[3].(map[string]any)
	if fd["metric"] != "frechet_distance" || fd["ci_low"] != -2.0 || fd["ci_high"] != -1.0 || fd["mean_diff"] != -1.5 || fd["favours"] != "student wavelet" || fd["excludes_zero"] != true {
		t.Errorf("FD comparison %v", fd)
	}
	m := js["models"].([]any)[3].(map[string]any)["metrics"].(map[string]any)["psnr"].(map[string]any)
	if m["mean"] != 23.5 || math.Abs(m["sd"].(float64)-math.Sqrt(0.5)) > 1e-12 || m["n"] != 2.0 {
		t.Errorf("student wavelet PSNR %v, want mean 23.5, sd sqrt(0.5), n 2", m)
	}
	if b := js["bootstrap"].(map[string]any); b["draws"] != 10000.0 || b["seed"] != 1.0 || b["level"] != 0.95 {
		t.Errorf("bootstrap %v", b)
	}

	// The same files give the same output.
	md2, _ := summarize(t, writeReports(t, seed1JSON, seed2JSON)...)
	if md2 != md {
		t.Error("summarize is not reproducible")
	}
}

func TestSummarizeOneSeedAndChosenPairs(t *testing.T) {
	md, js := summarize(t, append([]string{"--compare", "student pixel:student none"}, writeReports(t, seed1JSON)...)...)
	for _, w := range []string{
		"datasets/toy (pix2pix), 1 seed, 3 test images",
		"| student pixel | 1 | 100 | 2e+05 | 10.00x | 4.00x ± — | 22.00 ± — | 0.7000 ± — |",
		// Over images only: PSNR differences 0, 1, 2.
		"| student pixel | student none | PSNR | higher | +1.000 | [+0.000, +2.000] | test images (one seed) | no clear difference |",
		"| student pixel | student none | Frechet | lower | -2.000 | — | nothing (one seed) | needs 2+ seeds |",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("summary.md lacks\n%s\n%s", w, md)
		}
	}
	if md, _ := summarize(t, append([]string{"--compare", ""}, writeReports(t, seed1JSON, seed2JSON)...)...); strings.Contains(md, "Paired differences") {
		t.Errorf(`--compare "" compared something:\n%s`, md)
	}
	sd := js["models"].([]any)[0].(map[string]any)["metrics"].(map[string]any)["psnr"].(map[string]any)["sd"]
	if sd != nil {
		t.Errorf("sd of one seed is %v in summary.json, want null", sd)
	}
}

func TestSummarizeOlderReportsWithoutPerImageValues(t *testing.T) {
	var rep map[string]any
	json.Unmarshal([]byte(seed2JSON), &rep)
	for _, r := range rep["results"].([]any) {
		delete(r.(map[string]any), "per_image")
	}
	delete(rep, "feature_network")
	delete(rep, "test_set_digest")
	old, _ := json.Marshal(rep)
	md, _ := summarize(t, writeReports(t, seed1JSON, string(old))...)
	if !strings.Contains(md, "PSNR, SSIM and L1 resample seeds only: ") || !strings.Contains(md, "has no test_set_digest (made by an older wkd eval)") || !strings.Contains(md, "| student wavelet | student pixel | PSNR | higher | +1.000 | **[+1.000, +1.000]** | seeds |") {
		t.Errorf("summary.md of reports without per-image values:\n%s", md)
	}
}

// TestSummarizeOtherTestImages: two reports that differ only in test_set_digest evaluated
// different test images, so image i of one is not image i of the other and PSNR, SSIM and L1
// resample seeds only, as for reports without per-image values.
func TestSummarizeOtherTestImages(t *testing.T) {
	other := strings.Replace(seed2JSON, `"test_set_digest": "fnv64a:0123"`, `"test_set_digest": "fnv64a:4567"`, 1)
	if other == seed2JSON {
		t.Fatal("seed2JSON has no test_set_digest to change")
	}
	paths := writeReports(t, seed1JSON, other)
	md, js := summarize(t, paths...)
	for _, w := range []string{
		"PSNR, SSIM and L1 resample seeds only: " + paths[0] + " and " + paths[1] + " evaluated different test images.",
		"| student wavelet | student pixel | PSNR | higher | +1.000 | **[+1.000, +1.000]** | seeds | **student wavelet better** |",
		"| student wavelet | student none | PSNR | higher | +2.000 | **[+2.000, +2.000]** | seeds | **student wavelet better** |",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("summary.md lacks\n%s", w)
		}
	}
	if strings.Contains(md, "seeds and test images") {
		t.Error("reports of different test images were resampled over test images")
	}
	if t.Failed() {
		t.Logf("summary.md:\n%s", md)
	}
	if psnr := js["comparisons"].([]any)[0].(map[string]any); psnr["metric"] != "psnr" || psnr["resampled"] != "seeds" {
		t.Errorf("PSNR comparison %v, want resampled over seeds", psnr)
	}
}

// TestSummarizeRefusesNullPerImageValues: encoding/json reads a null as 0, a value no image
// had; the summary names the file instead of counting it.
func TestSummarizeRefusesNullPerImageValues(t *testing.T) {
	for _, c := range []struct {
		old, new, model, where string
	}{
		{`"psnr": [21, 23, 25]`, `"psnr": [21, null, 25]`, "student pixel", "per_image.psnr[1]"},
		{`"ssim": [0.62, 0.62, 0.62]`, `"ssim": [null, 0.62, 0.62]`, "student none", "per_image.ssim[0]"},
		{`"l1": [0.06, 0.06, 0.06]`, `"l1": [0.06, 0.06, null]`, "student wavelet", "per_image.l1[2]"},
	} {
		bad := strings.Replace(seed2JSON, c.old, c.new, 1)
		if bad == seed2JSON {
			t.Fatalf("seed2JSON has no %s", c.old)
		}
		paths := writeReports(t, seed1JSON, bad)
		err := runSummarize(paths)
		if err == nil {
			t.Errorf("%s: a null per-image value was accepted", c.new)
			continue
		}
		for _, w := range []string{paths[1], c.model, c.where, "null"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: err = %v, want one naming %q", c.new, err, w)
			}
		}
	}
}

// TestSummarizeHelpSaysWhereTheReportsGo: -h shows a usage line with the files after the flags.
func TestSummarizeHelpSaysWhereTheReportsGo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := execute([]string{"summarize", "-h"}, &stdout, &stderr); err != nil {
		t.Errorf("summarize -h: %v", err)
	}
	b := stdout.Bytes()
	for _, w := range []string{"wkd summarize [flags] report.json [report.json ...]\n", "after the flags", "--draws"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("summarize -h lacks %q:\n%s", w, b)
		}
	}
}

func TestSummarizeRejects(t *testing.T) {
	paths := writeReports(t, seed1JSON, seed2JSON, strings.Replace(seed2JSON, `"student pixel"`, `"student pix"`, 1), "{not json",
		strings.Replace(seed2JSON, `"test_accuracy": 91.5`, `"test_accuracy": 80`, 1))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{paths[0], paths[2]}, "student pixel"},
		{[]string{paths[0], paths[3]}, "not a report.json"},
		{[]string{paths[0], paths[4]}, "--features"},
		{[]string{"--compare", "student wavelet:student pix", paths[0]}, "--compare"},
		{[]string{"--compare", "student wavelet", paths[0]}, "--compare"},
		{[]string{"--draws", "0", paths[0]}, "--draws"},
		// Too few draws for a verdict; more than any interval needs (and than memory holds).
		{[]string{"--draws", "1", paths[0], paths[1]}, "--draws 1: want 1000 to 1000000"},
		{[]string{"--draws", "999", paths[0], paths[1]}, "--draws"},
		{[]string{"--draws", "100000000000000", paths[0], paths[1]}, "--draws 100000000000000: want 1000 to 1000000"},
		{[]string{"--level", "95", paths[0]}, "--level"},
		{[]string{filepath.Join(t.TempDir(), "none.json")}, "none.json"},
		{nil, "report.json"},
	}
	for _, c := range cases {
		err := runSummarize(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("summarize %s: err = %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
