package models

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"

	"wkd/internal/safetensors"
)

// ErrPth is returned for a .pth file that is not a PyTorch state_dict of float tensors.
var ErrPth = errors.New("models: not a PyTorch state_dict")

// ReadPth reads a state_dict saved with torch.save, in the zip format (PyTorch >= 1.6) or the
// legacy one, without Python: a dict of tensor name to tensor. Float, double, half and
// bfloat16 tensors are converted to float32 in row-major order whatever their strides; integer
// tensors (BatchNorm's num_batches_tracked) are skipped. A checkpoint that wraps the state_dict
// under "state_dict" or "model" is unwrapped.
//
// The file is checked before anything is allocated by what it claims: every length in the
// pickle must lie within it, and every storage must be as large as the bytes that hold it, so
// a damaged or hostile file is an error, never an exhausted memory.
func ReadPth(path string) (tensors map[string]safetensors.Tensor, err error) {
	// The pickle reader loops forever on an empty file and on one that opens with a zero
	// block, so only what torch.save writes goes to it: a zip, or a pickle stream.
	if ok, err := IsPthFile(path); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%s: %w: it starts with neither a zip header nor a pickle (torch.save writes one of those)", path, ErrPth)
	}
	// The unpickler works on untrusted bytes; whatever it trips over is this file's fault.
	defer func() {
		if r := recover(); r != nil {
			tensors, err = nil, fmt.Errorf("%s: %w: unreadable pickle (%v)", path, ErrPth, r)
		}
	}()
	var obj any
	if zr, zerr := zip.OpenReader(path); zerr == nil {
		defer zr.Close()
		obj, err = loadZipPth(&zr.Reader)
	} else {
		obj, err = loadLegacyPth(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dict, err := stateDict(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tensors = map[string]safetensors.Tensor{}
	var total int64
	for _, k := range dict.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%s: %w: key %v is not a string", path, ErrPth, k)
		}
		v, _ := dict.get(k)
		t, ok := v.(*pthTensor)
		if !ok {
			return nil, fmt.Errorf("%s: %w: %q is a %T, not a tensor", path, ErrPth, name, v)
		}
		if !t.storage.dtype.float {
			continue
		}
		data, err := t.gather()
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, name, err)
		}
		if total += int64(len(data)); total > maxPthElements {
			return nil, fmt.Errorf("%s: %w: more than %d values in all", path, ErrPth, int64(maxPthElements))
		}
		tensors[name] = safetensors.Tensor{Shape: append([]int(nil), t.size...), Data: data}
	}
	if len(tensors) == 0 {
		return nil, fmt.Errorf("%s: %w: no float tensors in it", path, ErrPth)
	}
	return tensors, nil
}

// maxPthElements bounds the values read from one file (4 GB of float32), far above any GAN.
const maxPthElements = 1 << 30

// pthDType is a storage class of torch: its element size and how to read one element.
type pthDType struct {
	name  string
	size  int
	float bool
	read  func(b []byte) float32
}

var pthDTypes = map[string]pthDType{
	"FloatStorage":    {"float32", 4, true, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }},
	"DoubleStorage":   {"float64", 8, true, func(b []byte) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(b))) }},
	"HalfStorage":     {"float16", 2, true, func(b []byte) float32 { return halfToFloat(binary.LittleEndian.Uint16(b)) }},
	"BFloat16Storage": {"bfloat16", 2, true, func(b []byte) float32 { return math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16) }},
	"LongStorage":     {"int64", 8, false, nil},
	"IntStorage":      {"int32", 4, false, nil},
	"ShortStorage":    {"int16", 2, false, nil},
	"CharStorage":     {"int8", 1, false, nil},
	"ByteStorage":     {"uint8", 1, false, nil},
	"BoolStorage":     {"bool", 1, false, nil},
}

// halfToFloat widens an IEEE 754 half.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := int(h>>10) & 0x1f
	frac := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case exp == 0:
		return float32(math.Copysign(float64(frac)*math.Pow(2, -24), float64(int32(sign)|1)))
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | frac<<13)
}

// pthStorage is a storage the pickle names; its bytes are attached after the pickle is read,
// once their size is checked against what the pickle claims.
type pthStorage struct {
	dtype pthDType
	key   string
	numel int
	data  []byte
}

// pthTensor is torch._utils._rebuild_tensor_v2's arguments.
type pthTensor struct {
	storage      *pthStorage
	offset       int
	size, stride []int
}

// gather reads the tensor's elements in row-major order, each within its storage.
func (t *pthTensor) gather() ([]float32, error) {
	if len(t.stride) != len(t.size) {
		return nil, fmt.Errorf("%w: %d strides for %d dimensions", ErrPth, len(t.stride), len(t.size))
	}
	n := 1
	for _, d := range t.size {
		if d < 0 || (d > 0 && n > maxPthElements/d) {
			return nil, fmt.Errorf("%w: shape %v is negative or too large", ErrPth, t.size)
		}
		n *= d
	}
	// A state_dict holds whole tensors: one with more elements than its storage is an
	// expanded view, which torch.save keeps as such.
	if n > t.storage.numel {
		return nil, fmt.Errorf("%w: shape %v has more elements than its storage (%d): save it .contiguous()", ErrPth, t.size, t.storage.numel)
	}
	dt, sz := t.storage.dtype, t.storage.dtype.size
	data := make([]float32, n)
	idx := make([]int, len(t.size))
	for i := range data {
		off := t.offset
		for d, k := range idx {
			off += k * t.stride[d]
		}
		if off < 0 || off >= t.storage.numel {
			return nil, fmt.Errorf("%w: element %d at storage offset %d of %d", ErrPth, i, off, t.storage.numel)
		}
		data[i] = dt.read(t.storage.data[off*sz:])
		for d := len(idx) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < t.size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return data, nil
}

// pthStorageClass is what the pickle's torch.*Storage globals become.
type pthStorageClass struct{ dtype pthDType }

// rebuildTensor is torch._utils._rebuild_tensor_v2 (and the older _rebuild_tensor).
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("%w: _rebuild_tensor with %d arguments", ErrPth, len(args))
	}
	st, ok := args[0].(*pthStorage)
	offset, ok2 := args[1].(int)
	size, ok3 := intTuple(args[2])
	stride, ok4 := intTuple(args[3])
	if !ok || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("%w: _rebuild_tensor arguments %T %T %T %T", ErrPth, args[0], args[1], args[2], args[3])
	}
	return &pthTensor{storage: st, offset: offset, size: size, stride: stride}, nil
}

func intTuple(v any) ([]int, bool) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, false
	}
	out := make([]int, t.Len())
	for i := range out {
		if out[i], ok = t.Get(i).(int); !ok {
			return nil, false
		}
	}
	return out, true
}

// unpickleState reads one pickle of a torch.save file: storages come from persistent ids
// ('storage', class, key, location, numel, ...) and are collected in storages by key.
func unpickleState(pkl []byte, storages map[string]*pthStorage) (any, error) {
	if _, err := scanPickle(pkl, 0); err != nil {
		return nil, err
	}
	u := pickle.NewUnpickler(bytes.NewReader(pkl))
	fallback := u.FindClass
	u.FindClass = func(module, name string) (any, error) {
		switch {
		case module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_tensor"):
			return rebuildTensor{}, nil
		case module == "torch":
			if dt, ok := pthDTypes[name]; ok {
				return &pthStorageClass{dt}, nil
			}
		}
		if fallback != nil {
			return fallback(module, name)
		}
		return types.NewGenericClass(module, name), nil
	}
	u.PersistentLoad = func(id any) (any, error) {
		t, ok := id.(*types.Tuple)
		if !ok || t.Len() < 5 {
			return nil, fmt.Errorf("%w: persistent id %v", ErrPth, id)
		}
		kind, _ := t.Get(0).(string)
		class, ok1 := t.Get(1).(*pthStorageClass)
		key, ok2 := t.Get(2).(string)
		numel, ok3 := t.Get(4).(int)
		if kind != "storage" || !ok1 || !ok2 || !ok3 || numel < 0 {
			return nil, fmt.Errorf("%w: a persistent id that is not a storage of a known type and size (key %v, size %v)", ErrPth, t.Get(2), t.Get(4))
		}
		if st, ok := storages[key]; ok {
			return st, nil
		}
		st := &pthStorage{dtype: class.dtype, key: key, numel: numel}
		storages[key] = st
		return st, nil
	}
	return u.Load()
}

// loadZipPth reads torch.save's zip format: <root>/data.pkl and one <root>/data/<key> record per
// storage, which must hold exactly the storage's bytes.
func loadZipPth(zr *zip.Reader) (any, error) {
	records := map[string]*zip.File{}
	var pklFile *zip.File
	for _, f := range zr.File {
		dir, base := path.Split(f.Name)
		switch {
		case base == "data.pkl":
			pklFile = f
		case base == "constants.pkl":
			return nil, fmt.Errorf("%w: a TorchScript archive (torch.jit.save); save the model's state_dict() with torch.save", ErrPth)
		case path.Base(strings.TrimSuffix(dir, "/")) == "data":
			records[base] = f
		}
	}
	if pklFile == nil {
		return nil, fmt.Errorf("%w: a zip without data.pkl", ErrPth)
	}
	pkl, err := readRecord(pklFile, 1<<26)
	if err != nil {
		return nil, err
	}
	storages := map[string]*pthStorage{}
	obj, err := unpickleState(pkl, storages)
	if err != nil {
		return nil, err
	}
	for key, st := range storages {
		f, ok := records[key]
		if !ok {
			return nil, fmt.Errorf("%w: storage %q has no data record", ErrPth, key)
		}
		want := uint64(st.numel) * uint64(st.dtype.size)
		if f.UncompressedSize64 != want {
			return nil, fmt.Errorf("%w: storage %q claims %d %s values, its record holds %d bytes", ErrPth, key, st.numel, st.dtype.name, f.UncompressedSize64)
		}
		if st.data, err = readRecord(f, int64(want)); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// readRecord reads a zip record of at most limit bytes.
func readRecord(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%w: record %s of %d bytes, more than %d", ErrPth, f.Name, f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrPth, f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)))
	if err != nil || len(b) != int(f.UncompressedSize64) {
		return nil, fmt.Errorf("%w: %s: %d of %d bytes read (%v)", ErrPth, f.Name, len(b), f.UncompressedSize64, err)
	}
	return b, nil
}

// loadLegacyPth reads the format before the zip: five pickles (magic number, protocol, system
// info, the object, the storage keys), then each storage as an 8-byte element count and its
// bytes, in the order of the keys.
func loadLegacyPth(file string) (any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pickles [5][]byte
	off := 0
	for i := range pickles {
		end, err := scanPickle(b, off)
		if err != nil {
			return nil, err
		}
		pickles[i], off = b[off:end], end
	}
	storages := map[string]*pthStorage{}
	obj, err := unpickleState(pickles[3], storages)
	if err != nil {
		return nil, err
	}
	keysObj, err := unpickleState(pickles[4], map[string]*pthStorage{})
	if err != nil {
		return nil, err
	}
	keys, ok := keysObj.(*types.List)
	if !ok {
		return nil, fmt.Errorf("%w: storage keys are a %T", ErrPth, keysObj)
	}
	for i := range keys.Len() {
		key, _ := keys.Get(i).(string)
		st, ok := storages[key]
		if !ok {
			return nil, fmt.Errorf("%w: storage key %v names no storage of the object", ErrPth, keys.Get(i))
		}
		if len(b)-off < 8 {
			return nil, fmt.Errorf("%w: storage %q is cut off", ErrPth, key)
		}
		n := binary.LittleEndian.Uint64(b[off:])
		off += 8
		size := uint64(st.dtype.size)
		if n != uint64(st.numel) || n > uint64(len(b)-off)/size {
			return nil, fmt.Errorf("%w: storage %q claims %d values; %d are named and %d bytes are left", ErrPth, key, n, st.numel, len(b)-off)
		}
		st.data = b[off : off+int(n*size)]
		off += int(n * size)
	}
	for key, st := range storages {
		if st.data == nil && st.numel > 0 {
			return nil, fmt.Errorf("%w: storage %q has no bytes", ErrPth, key)
		}
	}
	return obj, nil
}

// scanPickle walks the opcodes of the pickle starting at b[off:] and returns where it ends (after
// STOP), refusing unknown opcodes and any argument that runs past the end, before an
// unpickler would allocate what a length claims.
func scanPickle(b []byte, off int) (int, error) {
	need := func(n uint64) error {
		if n > uint64(len(b)-off) {
			return fmt.Errorf("%w: a pickle argument of %d bytes at offset %d runs past the end (%d bytes)", ErrPth, n, off, len(b))
		}
		return nil
	}
	for off < len(b) {
		op := b[off]
		off++
		switch op {
		case '.': // STOP
			return off, nil
		case '(', '0', '1', '2', 'N', 'R', 'a', 'b', 'd', '}', 'e', 'l', ']', 'o', 's', 't', ')', 'u', 'Q',
			0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x97, 0x98:
		case 'K', 'h', 'q', 0x80, 0x82, 'U', 'C', 0x8a, 0x8c: // one-byte argument (a length for some)
			if err := need(1); err != nil {
				return 0, err
			}
			n := uint64(b[off])
			off++
			if op == 'U' || op == 'C' || op == 0x8a || op == 0x8c {
				if err := need(n); err != nil {
					return 0, err
				}
				off += int(n)
			}
		case 'M', 0x83:
			if err := need(2); err != nil {
				return 0, err
			}
			off += 2
		case 'J', 'j', 'r', 0x84, 'T', 'X', 'B', 0x8b: // four bytes (a length for some)
			if err := need(4); err != nil {
				return 0, err
			}
			n := uint64(binary.LittleEndian.Uint32(b[off:]))
			off += 4
			if op == 'T' || op == 'X' || op == 'B' || op == 0x8b {
				if err := need(n); err != nil {
					return 0, err
				}
				off += int(n)
			}
		case 'G', 0x95, 0x8d, 0x8e, 0x96: // eight bytes (a length for the last three)
			if err := need(8); err != nil {
				return 0, err
			}
			n := binary.LittleEndian.Uint64(b[off:])
			off += 8
			if op == 0x8d || op == 0x8e || op == 0x96 {
				if err := need(n); err != nil {
					return 0, err
				}
				off += int(n)
			}
		case 'I', 'L', 'S', 'V', 'F', 'p', 'g', 'P', 'c', 'i': // text arguments ending in newlines
			lines := 1
			if op == 'c' || op == 'i' {
				lines = 2
			}
			for range lines {
				k := bytes.IndexByte(b[off:], '\n')
				if k < 0 {
					return 0, fmt.Errorf("%w: an unterminated text argument at offset %d", ErrPth, off)
				}
				off += k + 1
			}
		default:
			return 0, fmt.Errorf("%w: unknown pickle opcode 0x%02x at offset %d", ErrPth, op, off-1)
		}
	}
	return 0, fmt.Errorf("%w: the pickle has no STOP", ErrPth)
}

// IsPthFile reports whether path starts as torch.save files do: a zip, or (the legacy format)
// a protocol-2 pickle whose first value is torch's 10-byte magic number. As a safetensors
// header length either would be 67 MB or more, which no weights file has.
func IsPthFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	return n == 4 && (bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.Equal(head, []byte{0x80, 0x02, 0x8a, 0x0a})), nil
}

// pyDict is an ordered view of a pickled dict or OrderedDict.
type pyDict struct {
	keys []any
	get  func(k any) (any, bool)
}

func asDict(obj any) (pyDict, bool) {
	switch d := obj.(type) {
	case *types.OrderedDict:
		keys := make([]any, 0, d.Len())
		for e := d.List.Front(); e != nil; e = e.Next() {
			keys = append(keys, e.Value.(*types.OrderedDictEntry).Key)
		}
		return pyDict{keys, d.Get}, true
	case *types.Dict:
		keys := make([]any, 0, len(*d))
		for _, e := range *d {
			keys = append(keys, e.Key)
		}
		return pyDict{keys, d.Get}, true
	}
	return pyDict{}, false
}

func stateDict(obj any) (pyDict, error) {
	d, ok := asDict(obj)
	if !ok {
		return pyDict{}, fmt.Errorf("%w: the file holds a %T (a whole pickled module?); save model.state_dict() instead", ErrPth, obj)
	}
	for _, wrap := range []string{"state_dict", "model"} {
		if inner, ok := d.get(wrap); ok {
			if id, ok := asDict(inner); ok {
				return id, nil
			}
		}
	}
	return d, nil
}
