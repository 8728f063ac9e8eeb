// Package safetensors reads and writes the safetensors format (an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range, then the raw bytes),
// for float32 tensors. It knows nothing of wkd's tensors so that tests anywhere can use it.
//
// Files written here load in Python with safetensors.torch.load_file, and the reference's
// PyTorch weights saved with safetensors.torch.save_file load here.
package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Errors returned by Read and Decode.
var (
	ErrFormat = errors.New("safetensors: malformed file")
	ErrDType  = errors.New("safetensors: unsupported dtype")
)

// maxHeader bounds the JSON header so a corrupt length cannot exhaust memory.
const maxHeader = 100 << 20

// Tensor is one named float32 array.
type Tensor struct {
	Shape []int
	Data  []float32
}

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Encode writes tensors, sorted by name, and the string metadata.
func Encode(w io.Writer, tensors map[string]Tensor, meta map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		want := 1
		for _, d := range t.Shape {
			want *= d
		}
		if want != len(t.Data) {
			return fmt.Errorf("safetensors: tensor %q: shape %v holds %d values, have %d", n, t.Shape, want, len(t.Data))
		}
		size := int64(4 * len(t.Data))
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = entry{DType: "F32", Shape: shape, Offsets: [2]int64{off, off + size}}
		off += size
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	// Pad the header with spaces to 8 bytes, as the reference writer does, so data is aligned.
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hb)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(hb); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	for _, n := range names {
		for _, v := range tensors[n].Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			if len(buf) == cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	_, err = w.Write(buf)
	return err
}

// Decode parses a whole safetensors file held in memory.
func Decode(b []byte) (map[string]Tensor, map[string]string, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%w: %d bytes is shorter than the 8-byte header length", ErrFormat, len(b))
	}
	hl := binary.LittleEndian.Uint64(b[:8])
	if hl > maxHeader || hl > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("%w: header length %d does not fit in %d bytes (truncated?)", ErrFormat, hl, len(b))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+hl], &raw); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	data := b[8+hl:]
	out := make(map[string]Tensor, len(raw))
	var meta map[string]string
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("%w: metadata: %v", ErrFormat, err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		if e.DType != "F32" {
			return nil, nil, fmt.Errorf("%w: tensor %q is %s; convert it to float32 before saving", ErrDType, name, e.DType)
		}
		n := 1
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && n > len(data)/4/d) {
				return nil, nil, fmt.Errorf("%w: tensor %q has shape %v, more values than the file holds", ErrFormat, name, e.Shape)
			}
			n *= d
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) || hi-lo != int64(4*n) {
			return nil, nil, fmt.Errorf("%w: tensor %q: byte range [%d, %d) does not hold shape %v in %d data bytes (truncated?)", ErrFormat, name, lo, hi, e.Shape, len(data))
		}
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+int64(4*i):]))
		}
		out[name] = Tensor{Shape: e.Shape, Data: vals}
	}
	return out, meta, nil
}

// Read loads a file; errors name it.
func Read(path string) (map[string]Tensor, map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	t, m, err := Decode(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, m, nil
}

// WriteFile writes atomically: to a temporary file in the same folder, synced, then renamed
// over path, so a crash never leaves a half-written file where a good one was.
func WriteFile(path string, tensors map[string]Tensor, meta map[string]string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := Encode(bw, tensors, meta); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
