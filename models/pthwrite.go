package models

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"wkd/internal/safetensors"
)

// WritePth writes float32 tensors as a state_dict in torch.save's zip format (PyTorch >= 1.6),
// in the order of names, so that torch.load returns an OrderedDict of contiguous CPU tensors
// and load_state_dict takes it. The file is written beside path and renamed into place.
func WritePth(path string, names []string, tensors map[string]safetensors.Tensor) error {
	// The archive's folder is named after the file, as torch.save does.
	root := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if root == "" || strings.ContainsAny(root, "/\\") {
		root = "archive"
	}
	var pkl bytes.Buffer
	p := pickler{&pkl}
	p.op(0x80, 2)                          // PROTO 2
	p.global("collections", "OrderedDict") // the dict type
	p.op(')', 'R')                         // EMPTY_TUPLE, REDUCE: OrderedDict()
	p.op('(')                              // MARK
	for i, name := range names {
		t, ok := tensors[name]
		if !ok {
			return fmt.Errorf("%s: no tensor %q to write", path, name)
		}
		n := 1
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && n > len(t.Data)/d) {
				n = -1
				break
			}
			n *= d
		}
		if n != len(t.Data) {
			return fmt.Errorf("%s: %q has %d values for shape %v", path, name, len(t.Data), t.Shape)
		}
		p.str(name)
		// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op('(')
		p.op('(') // the storage, by persistent id ('storage', FloatStorage, key, 'cpu', numel)
		p.str("storage")
		p.global("torch", "FloatStorage")
		p.str(strconv.Itoa(i))
		p.str("cpu")
		p.int(n)
		p.op('t', 'Q') // TUPLE, BINPERSID
		p.int(0)
		p.ints(t.Shape)
		p.ints(contiguousStrides(t.Shape))
		p.op(0x89) // NEWFALSE: requires_grad
		p.global("collections", "OrderedDict")
		p.op(')', 'R') // backward hooks: OrderedDict()
		p.op('t', 'R') // TUPLE, REDUCE
	}
	p.op('u', '.') // SETITEMS, STOP

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	put := func(name string, b []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: root + "/" + name, Method: zip.Store})
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if err := put("data.pkl", pkl.Bytes()); err != nil {
		return err
	}
	for i, name := range names {
		data := tensors[name].Data
		raw := make([]byte, 4*len(data))
		for j, v := range data {
			binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(v))
		}
		if err := put("data/"+strconv.Itoa(i), raw); err != nil {
			return err
		}
	}
	if err := put("version", []byte("3\n")); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	// Into a temporary file beside path, synced, then renamed: a crash leaves any previous
	// file whole.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func contiguousStrides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// pickler writes the few pickle opcodes (protocol 2) a state_dict needs.
type pickler struct{ b *bytes.Buffer }

func (p pickler) op(ops ...byte) { p.b.Write(ops) }

// global is GLOBAL module\nname\n.
func (p pickler) global(module, name string) {
	p.b.WriteByte('c')
	p.b.WriteString(module + "\n" + name + "\n")
}

// str is BINUNICODE: a 4-byte length and UTF-8 bytes.
func (p pickler) str(s string) {
	p.b.WriteByte('X')
	binary.Write(p.b, binary.LittleEndian, uint32(len(s)))
	p.b.WriteString(s)
}

// int is BININT1, BININT2 or BININT (4-byte signed), whichever holds v.
func (p pickler) int(v int) {
	switch {
	case v >= 0 && v < 1<<8:
		p.b.Write([]byte{'K', byte(v)})
	case v >= 0 && v < 1<<16:
		p.b.Write([]byte{'M', byte(v), byte(v >> 8)})
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.b.WriteByte('J')
		binary.Write(p.b, binary.LittleEndian, int32(v))
	default:
		// LONG1: a length byte and the little-endian two's complement bytes.
		var le [8]byte
		binary.LittleEndian.PutUint64(le[:], uint64(v))
		p.b.Write([]byte{0x8a, 8})
		p.b.Write(le[:])
	}
}

// ints is a tuple of ints: MARK, the ints, TUPLE.
func (p pickler) ints(vs []int) {
	p.op('(')
	for _, v := range vs {
		p.int(v)
	}
	p.op('t')
}
