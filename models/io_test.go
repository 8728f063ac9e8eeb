package models

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wkd/internal/safetensors"
	"wkd/ops"
)

func smallUNet(t *testing.T, seed uint64) Module {
	t.Helper()
	m, err := Build(Spec{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Batch, Dropout: true})
	if err != nil {
		t.Fatal(err)
	}
	randomize(m, seed)
	return m
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.safetensors")
	a := smallUNet(t, 1)
	if err := Save(path, a, map[string]string{"epoch": "7"}); err != nil {
		t.Fatal(err)
	}
	b := smallUNet(t, 2)
	meta, err := Load(path, b)
	if err != nil {
		t.Fatal(err)
	}
	if meta["epoch"] != "7" || !strings.Contains(meta[metaSpec], "unet(5 downs)") {
		t.Errorf("metadata %v", meta)
	}
	for _, ta := range a.State() {
		tb := b.Named()[ta.Name]
		if !slices.Equal(ta.Data, tb.Data) {
			t.Errorf("%s differs after a round trip", ta.Name)
		}
	}
	// The file holds exactly the state_dict keys, running statistics included.
	raw, _, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(a.State()) || raw["model.model.1.model.2.running_var"].Data == nil {
		t.Errorf("file has %d tensors, network %d", len(raw), len(a.State()))
	}
}

func TestLoadIgnoresNumBatchesTracked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "from_pth.safetensors")
	a := smallUNet(t, 1)
	tensors := map[string]safetensors.Tensor{}
	for _, st := range a.State() {
		tensors[st.Name] = safetensors.Tensor{Shape: st.Shape, Data: st.Data}
	}
	tensors["model.model.1.model.2.num_batches_tracked"] = safetensors.Tensor{Shape: []int{}, Data: []float32{12}}
	if err := safetensors.WriteFile(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, smallUNet(t, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrorsNameFileAndTensor(t *testing.T) {
	dir := t.TempDir()
	a := smallUNet(t, 1)
	write := func(name string, edit func(map[string]safetensors.Tensor)) string {
		tensors := map[string]safetensors.Tensor{}
		for _, st := range a.State() {
			tensors[st.Name] = safetensors.Tensor{Shape: st.Shape, Data: st.Data}
		}
		edit(tensors)
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, tensors, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const victim = "model.model.1.model.1.weight"
	cases := []struct {
		file   string
		want   error
		tensor string
	}{
		{write("missing.safetensors", func(m map[string]safetensors.Tensor) { delete(m, victim) }), ErrMissing, victim},
		{write("extra.safetensors", func(m map[string]safetensors.Tensor) {
			m["model.model.9.weight"] = safetensors.Tensor{Shape: []int{1}, Data: []float32{1}}
		}), ErrUnexpected, "model.model.9.weight"},
		{write("shape.safetensors", func(m map[string]safetensors.Tensor) {
			m[victim] = safetensors.Tensor{Shape: []int{2, 2}, Data: make([]float32, 4)}
		}), ErrShape, victim},
	}
	for _, c := range cases {
		b := smallUNet(t, 5)
		before := slices.Clone(b.Named()["model.model.0.weight"].Data)
		_, err := Load(c.file, b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.file, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.tensor) {
			t.Errorf("error %q should name the file and %q", err, c.tensor)
		}
		if !slices.Equal(before, b.Named()["model.model.0.weight"].Data) {
			t.Errorf("%s: a failed Load changed the network", c.file)
		}
	}
	// A file of another kind is an error too, not a partial load.
	path := filepath.Join(dir, "resnet.safetensors")
	r, _ := Build(Spec{Kind: ResNet, NBlocks: 1, InputNC: 3, OutputNC: 3, NGF: 4, Norm: Instance})
	if err := Save(path, r, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, smallUNet(t, 5)); !errors.Is(err, ErrMissing) {
		t.Errorf("loading a resnet into a unet: %v", err)
	}
}

func TestLoadTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.safetensors")
	a := smallUNet(t, 1)
	if err := Save(path, a, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b[:len(b)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, smallUNet(t, 2))
	if !errors.Is(err, safetensors.ErrFormat) || !strings.Contains(err.Error(), path) {
		t.Errorf("truncated file: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.safetensors"), a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
}

func TestInit(t *testing.T) {
	spec := Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 16, Norm: Batch}
	a, _ := Build(spec)
	b, _ := Build(spec)
	Init(a, ops.NewRNG(9))
	Init(b, ops.NewRNG(9))
	var convW, bnW []float32
	for _, st := range a.State() {
		if !slices.Equal(st.Data, b.Named()[st.Name].Data) {
			t.Fatalf("%s differs between two inits with one seed", st.Name)
		}
		switch {
		case strings.HasSuffix(st.Name, "bias"), strings.HasSuffix(st.Name, "running_mean"):
			if maxAbs(st.Data) != 0 {
				t.Errorf("%s not zero", st.Name)
			}
		case strings.HasSuffix(st.Name, "running_var"):
			for _, v := range st.Data {
				if v != 1 {
					t.Fatalf("%s not one", st.Name)
				}
			}
		case len(st.Shape) == 4:
			convW = append(convW, st.Data...)
		default:
			bnW = append(bnW, st.Data...)
		}
	}
	check := func(what string, v []float32, mean, std float64) {
		var s, s2 float64
		for _, x := range v {
			s += float64(x)
			s2 += float64(x) * float64(x)
		}
		m := s / float64(len(v))
		sd := (s2/float64(len(v)) - m*m)
		if sd > 0 {
			sd = sqrt(sd)
		}
		if abs(m-mean) > 4*std/sqrt(float64(len(v))) || abs(sd-std) > 0.02*std+4*std/sqrt(2*float64(len(v))) {
			t.Errorf("%s: mean %.5f std %.5f over %d values, want N(%v, %v)", what, m, sd, len(v), mean, std)
		}
	}
	check("conv weights", convW, 0, 0.02)
	check("batchnorm weights", bnW, 1, 0.02)
	Init(b, ops.NewRNG(10))
	if slices.Equal(a.Params()[0].Data, b.Params()[0].Data) {
		t.Error("another seed gave the same weights")
	}
}
