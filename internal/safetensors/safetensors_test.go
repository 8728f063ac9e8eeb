package safetensors

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := map[string]Tensor{
		"model.1.weight": {Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, 4, 5, -6}},
		"scalar":         {Shape: []int{}, Data: []float32{7}},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, in, map[string]string{"step": "12"}); err != nil {
		t.Fatal(err)
	}
	if (buf.Len()-8)%4 != 0 {
		t.Errorf("header not padded: total %d", buf.Len())
	}
	out, meta, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if meta["step"] != "12" {
		t.Errorf("metadata step = %q, want 12", meta["step"])
	}
	for name, want := range in {
		got, ok := out[name]
		if !ok {
			t.Fatalf("missing %s", name)
		}
		if len(got.Data) != len(want.Data) {
			t.Fatalf("%s: %d values, want %d", name, len(got.Data), len(want.Data))
		}
		for i := range want.Data {
			if got.Data[i] != want.Data[i] {
				t.Errorf("%s[%d] = %v, want %v", name, i, got.Data[i], want.Data[i])
			}
		}
	}
}

func TestTruncatedIsRefused(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, map[string]Tensor{"w": {Shape: []int{64}, Data: make([]float32, 64)}}, nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	for _, n := range []int{0, 5, 8, 20, len(b) - 1} {
		if _, _, err := Decode(b[:n]); !errors.Is(err, ErrFormat) {
			t.Errorf("truncated to %d bytes: err = %v, want ErrFormat", n, err)
		}
	}
}

func TestWriteFileKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "g.safetensors")
	good := map[string]Tensor{"w": {Shape: []int{1}, Data: []float32{1}}}
	if err := WriteFile(p, good, nil); err != nil {
		t.Fatal(err)
	}
	bad := map[string]Tensor{"w": {Shape: []int{3}, Data: []float32{1}}} // shape lies
	if err := WriteFile(p, bad, nil); err == nil {
		t.Fatal("want an error for a shape that does not match the data")
	}
	got, _, err := Read(p)
	if err != nil || got["w"].Data[0] != 1 {
		t.Fatalf("old file lost: %v %v", got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}
