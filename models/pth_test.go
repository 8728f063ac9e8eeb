package models

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wkd/internal/safetensors"
	"wkd/internal/torchref"
	"wkd/ops"
)

// TestReadPthAgainstTorch: state_dicts written by torch.save in the zip and the legacy format,
// bare and wrapped in {"state_dict": ...}, with a non-contiguous (transposed) tensor, a
// storage shared by two views at an offset, float64 and float16 tensors and an integer counter,
// read back exactly.
func TestReadPthAgainstTorch(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	var save strings.Builder
	for _, v := range []struct{ name, arg string }{{"zip", ""}, {"legacy", ", _use_new_zipfile_serialization=False"}} {
		for _, wrap := range []bool{false, true} {
			name := fmt.Sprintf("%s_%v.pth", v.name, wrap)
			files[name] = filepath.Join(dir, name)
			obj := "sd"
			if wrap {
				obj = "{'state_dict': sd, 'epoch': 3}"
			}
			fmt.Fprintf(&save, "torch.save(%s, %q%s)\n", obj, files[name], v.arg)
		}
	}
	want := torchref.Run(t, `
import collections
g = torch.Generator().manual_seed(1)
base = torch.randn(5, 7, generator=g)
flat = torch.randn(40, generator=g)
sd = collections.OrderedDict()
sd['conv.weight'] = torch.randn(4, 3, 2, 2, generator=g)
sd['transposed'] = base.t()                # strides (1, 7)
sd['view_at_offset'] = flat[10:30].view(4, 5)
sd['other_view'] = flat[:8]
sd['double'] = torch.randn(3, 2, generator=g, dtype=torch.float64)
sd['half'] = torch.randn(6, generator=g).half()
sd['bn.num_batches_tracked'] = torch.tensor(12)
`+save.String()+`
for k, v in sd.items():
    if v.is_floating_point():
        O[k] = v.float().contiguous()
`, nil)
	for name, path := range files {
		got, err := ReadPth(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := got["bn.num_batches_tracked"]; ok {
			t.Errorf("%s: the integer counter was read as a float tensor", name)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d float tensors, want %d", name, len(got), len(want))
		}
		for k, w := range want {
			g, ok := got[k]
			if !ok || !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.Data, w.Data) {
				t.Errorf("%s: %q = %v %v, want %v %v", name, k, g.Shape, head(g.Data), w.Shape, head(w.Data))
			}
		}
	}
}

func head(v []float32) []float32 { return v[:min(4, len(v))] }

// TestReadPthRefusesDamage: a truncated file, bytes that are not a pickle and a file holding no
// state_dict are errors naming the file, never panics.
func TestReadPthRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pth")
	legacy := filepath.Join(dir, "legacy.pth")
	notDict := filepath.Join(dir, "list.pth")
	torchref.Run(t, fmt.Sprintf(`
sd = {'w': torch.randn(64, 64)}
torch.save(sd, %q)
torch.save(sd, %q, _use_new_zipfile_serialization=False)
torch.save([1, 2, 3], %q)
`, good, legacy, notDict), nil)
	cases := map[string][]byte{}
	for _, src := range []string{good, legacy} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, frac := range []int{2, 3, 10} {
			cases[fmt.Sprintf("%s cut to 1/%d", filepath.Base(src), frac)] = b[:len(b)/frac]
		}
	}
	cases["text"] = []byte("this is not a pickle\n")
	cases["empty"] = nil
	for name, b := range cases {
		path := filepath.Join(dir, "bad.pth")
		os.WriteFile(path, b, 0o644)
		_, err := ReadPth(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want one naming the file", name, err)
		}
	}
	if _, err := ReadPth(notDict); err == nil || !errors.Is(err, ErrPth) || !strings.Contains(err.Error(), "state_dict") {
		t.Errorf("a pickled list: err = %v, want ErrPth saying a state_dict is wanted", err)
	}
}

// TestLoadInceptionChecksTheTensors: a file missing one of the network's tensors, or with one
// of another shape, is refused naming the tensor; extra tensors (fc, counters) are ignored.
func TestLoadInceptionChecksTheTensors(t *testing.T) {
	dir := t.TempDir()
	m := NewInception()
	m.InitRandom(2)
	if n := len(m.State()); n != 94*5 {
		t.Fatalf("%d state tensors, want 94 convs x 5 (weight and BatchNorm's four)", n)
	}
	good := filepath.Join(dir, "good.safetensors")
	if err := m.Save(good, nil); err != nil {
		t.Fatal(err)
	}
	back, err := LoadInception(good)
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range back.State() {
		if !slices.Equal(tt.Data, m.State()[i].Data) {
			t.Fatalf("%s differs after a save and load", tt.Name)
		}
	}
	// Drop one tensor, then misshape another.
	drop := NewInception()
	delete(drop.named, "Mixed_6c.branch7x7dbl_3.conv.weight")
	drop.order = slices.DeleteFunc(drop.order, func(x *ops.Tensor) bool { return x.Name == "Mixed_6c.branch7x7dbl_3.conv.weight" })
	missing := filepath.Join(dir, "missing.safetensors")
	drop.Save(missing, nil)
	if _, err := LoadInception(missing); err == nil || !errors.Is(err, ErrInceptionWeights) || !strings.Contains(err.Error(), "Mixed_6c.branch7x7dbl_3.conv.weight") {
		t.Errorf("missing tensor: err = %v", err)
	}
	bad := NewInception()
	w := bad.named["Mixed_7b.branch3x3_2a.conv.weight"]
	w.Shape = []int{384, 384, 3, 1} // the 2b kernel's shape
	misshapen := filepath.Join(dir, "misshapen.safetensors")
	bad.Save(misshapen, nil)
	if _, err := LoadInception(misshapen); err == nil || !strings.Contains(err.Error(), "Mixed_7b.branch3x3_2a.conv.weight") || !strings.Contains(err.Error(), "[384 384 1 3]") {
		t.Errorf("misshapen tensor: err = %v", err)
	}
}

// TestWritePthLoadsInTorch: a state_dict written by WritePth loads with torch.load, in order,
// with exact values and contiguous shapes, and reads back through ReadPth.
func TestWritePthLoadsInTorch(t *testing.T) {
	dir := t.TempDir()
	names := []string{"model.1.weight", "model.1.bias", "big", "scalar_like"}
	tensors := map[string]safetensors.Tensor{
		"model.1.weight": {Shape: []int{4, 3, 2, 2}, Data: make([]float32, 48)},
		"model.1.bias":   {Shape: []int{4}, Data: []float32{1, -2, 3.5, float32(math.Inf(1))}},
		"big":            {Shape: []int{300, 70000}, Data: make([]float32, 300*70000)},
		"scalar_like":    {Shape: []int{1}, Data: []float32{-0.25}},
	}
	for i := range tensors["model.1.weight"].Data {
		tensors["model.1.weight"].Data[i] = float32(i) / 7
	}
	tensors["big"].Data[300*70000-1] = 42
	path := filepath.Join(dir, "w.pth")
	if err := WritePth(path, names, tensors); err != nil {
		t.Fatal(err)
	}
	out := torchref.Run(t, fmt.Sprintf(`
sd = torch.load(%q)
assert list(sd.keys()) == ['model.1.weight', 'model.1.bias', 'big', 'scalar_like'], list(sd.keys())
for k, v in sd.items():
    assert v.is_contiguous() and v.dtype == torch.float32 and not v.requires_grad, k
    O[k] = v if k != 'big' else v[-1, -3:].contiguous()
`, path), nil)
	for _, name := range []string{"model.1.weight", "model.1.bias", "scalar_like"} {
		if !slices.Equal(out[name].Data, tensors[name].Data) || !slices.Equal(out[name].Shape, tensors[name].Shape) {
			t.Errorf("%s: torch read %v %v, wrote %v %v", name, out[name].Shape, head(out[name].Data), tensors[name].Shape, head(tensors[name].Data))
		}
	}
	if got := out["big"].Data; !slices.Equal(got, []float32{0, 0, 42}) {
		t.Errorf("big[-1, -3:] = %v in torch, want [0 0 42] (offsets above 65535 elements)", got)
	}
	back, err := ReadPth(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if !slices.Equal(back[name].Data, tensors[name].Data) {
			t.Errorf("%s differs after WritePth and ReadPth", name)
		}
	}
}

// TestReadPthRefusesHostileFiles: files of a few hundred bytes whose pickle claims storages,
// shapes or strings of terabytes, expanded views, missing records or negative sizes are
// refused before anything of that size is allocated (the test would die of exhausted memory).
func TestReadPthRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	torchref.Run(t, fmt.Sprintf(`
import pickle, io, zipfile, struct, collections, os
os.chdir(%q)
class Stor:
    def __init__(s, key, numel, cls=torch.FloatStorage): s.key, s.numel, s.cls = key, numel, cls
class T:
    def __init__(s, stor, off, size, stride): s.a = (stor, off, size, stride, False, collections.OrderedDict())
    def __reduce__(s): return (torch._utils._rebuild_tensor_v2, s.a)
class P(pickle.Pickler):
    def persistent_id(s, o):
        return ('storage', o.cls, o.key, 'cpu', o.numel) if isinstance(o, Stor) else None
def zpth(path, stor, size, stride, files):
    b = io.BytesIO(); P(b, protocol=2).dump(collections.OrderedDict(w=T(stor, 0, size, stride)))
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr('archive/data.pkl', b.getvalue())
        for k, v in files.items(): z.writestr('archive/data/' + k, v)
        z.writestr('archive/version', '3\n')
one = struct.pack('<f', 1.0)
zpth('hugestorage.pth', Stor('0', 1 << 40), (1,), (1,), {'0': one})
zpth('expanded.pth', Stor('0', 1), (1 << 15, 1 << 15), (0, 0), {'0': one})
zpth('missingdata.pth', Stor('0', 4), (4,), (1,), {})
zpth('overflow.pth', Stor('0', 1), (1 << 32, 1 << 32, 3), (0, 0, 0), {'0': one})
zpth('negstorage.pth', Stor('0', -5), (1,), (1,), {'0': one})
zpth('double64g.pth', Stor('0', 1 << 33, torch.DoubleStorage), (1,), (1,), {'0': struct.pack('<d', 1)})
with zipfile.ZipFile('hugestr.pth', 'w') as z:
    z.writestr('archive/data.pkl', b'\x80\x04\x8d' + struct.pack('<Q', 1 << 40) + b'x')
torch.save({'w': torch.ones(4)}, 'legacy.pth', _use_new_zipfile_serialization=False)
b = bytearray(open('legacy.pth', 'rb').read())
b[len(b) - 24:len(b) - 16] = struct.pack('<q', 1 << 40)  # the storage's element count
open('legacy_huge.pth', 'wb').write(bytes(b))
`, dir), nil)
	for _, name := range []string{"hugestorage", "expanded", "missingdata", "overflow", "negstorage", "double64g", "hugestr", "legacy_huge"} {
		path := filepath.Join(dir, name+".pth")
		if _, err := ReadPth(path); !errors.Is(err, ErrPth) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want ErrPth naming the file", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
