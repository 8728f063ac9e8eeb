package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// IDX is an unsigned-byte IDX array (the MNIST file format): Dims holds the sizes, outermost
// first, and Data the values in row-major order.
type IDX struct {
	Dims []int
	Data []uint8 // Data: (Dims[0], Dims[1], ...)
}

// maxIDXElems bounds the header's claim before allocating (Fashion-MNIST train is 47 M).
const maxIDXElems = 1 << 31

// ReadIDX reads an IDX file of unsigned bytes (type code 0x08), gzip-compressed or raw
// (recognised from the gzip magic number).
func ReadIDX(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (install the Debian package dataset-fashion-mnist or pass the folder that holds the files)", ErrIDXUnreadable, err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: gzip: %v", ErrBadIDX, path, err)
		}
		defer gz.Close()
		r = gz
	}
	idx, err := readIDX(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (the file is truncated or not an IDX file; download it again)", ErrBadIDX, path, err)
	}
	return idx, nil
}

func readIDX(r io.Reader) (*IDX, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("header: %v", err)
	}
	if hdr[0] != 0 || hdr[1] != 0 {
		return nil, fmt.Errorf("magic %x, want 00 00 08 <ndim>", hdr)
	}
	if hdr[2] != 0x08 {
		return nil, fmt.Errorf("element type 0x%02x, only unsigned byte (0x08) is supported", hdr[2])
	}
	nd := int(hdr[3])
	if nd == 0 {
		return nil, fmt.Errorf("zero dimensions")
	}
	dims := make([]int, nd)
	total := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, fmt.Errorf("dimension %d: %v", i, err)
		}
		dims[i] = int(d)
		total *= int(d)
		if total > maxIDXElems {
			return nil, fmt.Errorf("header claims more than %d elements", maxIDXElems)
		}
	}
	data := make([]uint8, total)
	if n, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("data: got %d of %d bytes: %v", n, total, err)
	}
	var extra [1]byte
	if n, _ := r.Read(extra[:]); n != 0 {
		return nil, fmt.Errorf("trailing bytes after %d elements", total)
	}
	return &IDX{Dims: dims, Data: data}, nil
}
