package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// encodeIDX writes an unsigned-byte IDX file, gzip-compressed when gz.
func encodeIDX(t *testing.T, path string, dims []int, values []uint8, gz bool) {
	t.Helper()
	var raw bytes.Buffer
	raw.Write([]byte{0, 0, 0x08, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&raw, binary.BigEndian, uint32(d))
	}
	raw.Write(values)
	b := raw.Bytes()
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		b = z.Bytes()
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadIDXRawAndGzip(t *testing.T) {
	dir := t.TempDir()
	values := []uint8{1, 2, 3, 4, 5, 6}
	for _, gz := range []bool{false, true} {
		p := filepath.Join(dir, "x")
		encodeIDX(t, p, []int{2, 3}, values, gz)
		idx, err := ReadIDX(p)
		if err != nil {
			t.Fatalf("gzip %v: %v", gz, err)
		}
		if !slices.Equal(idx.Dims, []int{2, 3}) || !slices.Equal(idx.Data, values) {
			t.Fatalf("gzip %v: dims %v data %v", gz, idx.Dims, idx.Data)
		}
	}
}

// The real files from Debian's dataset-fashion-mnist: 6000 items of each class.
func TestReadFashionMNISTLabels(t *testing.T) {
	const dir = "/usr/share/datasets/fashion-mnist"
	lbl, err := ReadIDX(filepath.Join(dir, "train-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatalf("%v (install with: apt-get install dataset-fashion-mnist)", err)
	}
	var counts [10]int
	for _, l := range lbl.Data {
		counts[l]++
	}
	if !slices.Equal(lbl.Dims, []int{60000}) || counts != [10]int{6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000} {
		t.Fatalf("dims %v, class counts %v", lbl.Dims, counts)
	}
}
