package models

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"

	"wkd/internal/safetensors"
)

// ErrPth is returned for a .pth file that is not a PyTorch state_dict of float tensors.
var ErrPth = errors.New("models: not a PyTorch state_dict")

// ReadPth reads a state_dict saved with torch.save, in the zip format (PyTorch >= 1.6) or the
// legacy one, without Python: a dict of tensor name to tensor. Float, double and half tensors
// are converted to float32 in row-major order whatever their strides; integer tensors
// (BatchNorm's num_batches_tracked) are skipped. A checkpoint that wraps the state_dict under
// "state_dict" or "model" is unwrapped.
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
	obj, err := pytorch.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrPth, err)
	}
	dict, err := stateDict(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tensors = map[string]safetensors.Tensor{}
	for _, k := range dict.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%s: %w: key %v is not a string", path, ErrPth, k)
		}
		v, _ := dict.get(k)
		t, ok := v.(*pytorch.Tensor)
		if !ok {
			return nil, fmt.Errorf("%s: %w: %q is a %T, not a tensor", path, ErrPth, name, v)
		}
		data, isFloat, err := floatData(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, name, err)
		}
		if isFloat {
			tensors[name] = safetensors.Tensor{Shape: append([]int(nil), t.Size...), Data: data}
		}
	}
	if len(tensors) == 0 {
		return nil, fmt.Errorf("%s: %w: no float tensors in it", path, ErrPth)
	}
	return tensors, nil
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

// floatData gathers a tensor's elements in row-major order as float32; isFloat is false for
// integer and boolean tensors.
func floatData(t *pytorch.Tensor) (data []float32, isFloat bool, err error) {
	var src func(i int) float32
	var size int
	switch s := t.Source.(type) {
	case *pytorch.FloatStorage:
		src, size = func(i int) float32 { return s.Data[i] }, len(s.Data)
	case *pytorch.DoubleStorage:
		src, size = func(i int) float32 { return float32(s.Data[i]) }, len(s.Data)
	case *pytorch.HalfStorage:
		src, size = func(i int) float32 { return s.Data[i] }, len(s.Data)
	case *pytorch.BFloat16Storage:
		src, size = func(i int) float32 { return s.Data[i] }, len(s.Data)
	default:
		return nil, false, nil
	}
	if len(t.Stride) != len(t.Size) {
		return nil, false, fmt.Errorf("%w: %d strides for %d dimensions", ErrPth, len(t.Stride), len(t.Size))
	}
	n := 1
	for _, d := range t.Size {
		if d < 0 {
			return nil, false, fmt.Errorf("%w: negative size %v", ErrPth, t.Size)
		}
		n *= d
	}
	data = make([]float32, n)
	idx := make([]int, len(t.Size))
	for i := range data {
		off := t.StorageOffset
		for d, k := range idx {
			off += k * t.Stride[d]
		}
		if off < 0 || off >= size {
			return nil, false, fmt.Errorf("%w: element %d at storage offset %d of %d", ErrPth, i, off, size)
		}
		data[i] = src(off)
		for d := len(idx) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < t.Size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return data, true, nil
}
