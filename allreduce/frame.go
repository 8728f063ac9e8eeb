package allreduce

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// Frame layout, little endian, HeaderSize bytes then Count float32:
//
//	0 magic "wA"   2 version   3 type
//	4 from u32     8 to u32    12 generation u64   20 step u64
//	28 bucket u32  32 bucket length u32  36 phase u8  37 zero u8  38 ring step u16
//	40 segment u32 44 offset u32  48 count u32  52 sent u32  56 prev sent u32  60 zero u32
//
// The header is a multiple of 8 bytes so the payload of a frame allocated by Go is aligned
// for float32 and can be read in place.
const (
	HeaderSize   = 64
	frameMagic0  = 'w'
	frameMagic1  = 'A'
	frameVersion = 1
)

var nativeLittle = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// FrameSize is the size of m's frame in bytes.
func FrameSize(m *Message) int { return HeaderSize + 4*len(m.Data) }

// Marshal returns m's frame.
func Marshal(m *Message) ([]byte, error) { return AppendFrame(nil, m) }

// AppendFrame appends m's frame to dst; it copies m.Data once.
func AppendFrame(dst []byte, m *Message) ([]byte, error) {
	if m.Type < MsgChunk || m.Type > MsgAbort {
		return dst, fmt.Errorf("%w: unknown type %d", ErrBadArgument, m.Type)
	}
	if m.From < 0 || m.To < 0 || m.From > math.MaxUint32 || m.To > math.MaxUint32 ||
		m.Bucket < 0 || m.Bucket > math.MaxUint32 || m.BucketLen < 0 || m.BucketLen > math.MaxUint32 ||
		m.RingStep < 0 || m.RingStep > math.MaxUint16 || m.Segment < 0 || m.Segment > math.MaxUint32 ||
		m.Offset < 0 || m.Offset > math.MaxUint32 || m.Sent < 0 || m.Sent > math.MaxUint32 || m.PrevSent < 0 || m.PrevSent > math.MaxUint32 || len(m.Data) > math.MaxUint32 || m.Phase > AllGather {
		return dst, fmt.Errorf("%w: field out of range in %v", ErrBadArgument, m)
	}
	if m.Type != MsgChunk && len(m.Data) != 0 {
		return dst, fmt.Errorf("%w: %v carries data", ErrBadArgument, m.Type)
	}
	n := len(dst)
	size := FrameSize(m)
	if cap(dst)-n < size {
		nd := make([]byte, n, n+size)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:n+size]
	h := dst[n : n+HeaderSize]
	le := binary.LittleEndian
	h[0], h[1], h[2], h[3] = frameMagic0, frameMagic1, frameVersion, byte(m.Type)
	le.PutUint32(h[4:], uint32(m.From))
	le.PutUint32(h[8:], uint32(m.To))
	le.PutUint64(h[12:], m.Generation)
	le.PutUint64(h[20:], m.Step)
	le.PutUint32(h[28:], uint32(m.Bucket))
	le.PutUint32(h[32:], uint32(m.BucketLen))
	h[36], h[37] = byte(m.Phase), 0
	le.PutUint16(h[38:], uint16(m.RingStep))
	le.PutUint32(h[40:], uint32(m.Segment))
	le.PutUint32(h[44:], uint32(m.Offset))
	le.PutUint32(h[48:], uint32(len(m.Data)))
	le.PutUint32(h[52:], uint32(m.Sent))
	le.PutUint32(h[56:], uint32(m.PrevSent))
	le.PutUint32(h[60:], 0)
	p := dst[n+HeaderSize:]
	if nativeLittle && len(m.Data) > 0 {
		copy(p, unsafe.Slice((*byte)(unsafe.Pointer(&m.Data[0])), 4*len(m.Data)))
	} else {
		for i, v := range m.Data {
			le.PutUint32(p[4*i:], math.Float32bits(v))
		}
	}
	return dst, nil
}

// Unmarshal parses one frame. On a little-endian machine with an aligned payload, Data aliases
// b (no copy), so b must not be reused while the message lives.
func Unmarshal(b []byte) (Message, error) {
	if len(b) < HeaderSize {
		return Message{}, fmt.Errorf("%w: %d bytes, header needs %d", ErrTruncated, len(b), HeaderSize)
	}
	if b[0] != frameMagic0 || b[1] != frameMagic1 {
		return Message{}, fmt.Errorf("%w: bad magic %q", ErrMalformed, b[:2])
	}
	if b[2] != frameVersion {
		return Message{}, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[2], frameVersion)
	}
	le := binary.LittleEndian
	m := Message{
		Type:       Type(b[3]),
		From:       int(le.Uint32(b[4:])),
		To:         int(le.Uint32(b[8:])),
		Generation: le.Uint64(b[12:]),
		Step:       le.Uint64(b[20:]),
		Bucket:     int(le.Uint32(b[28:])),
		BucketLen:  int(le.Uint32(b[32:])),
		Phase:      Phase(b[36]),
		RingStep:   int(le.Uint16(b[38:])),
		Segment:    int(le.Uint32(b[40:])),
		Offset:     int(le.Uint32(b[44:])),
		Sent:       int(le.Uint32(b[52:])),
		PrevSent:   int(le.Uint32(b[56:])),
	}
	count := uint64(le.Uint32(b[48:]))
	switch {
	case m.Type < MsgChunk || m.Type > MsgAbort:
		return Message{}, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[3])
	case m.Phase > AllGather || b[37] != 0 || le.Uint32(b[60:]) != 0:
		return Message{}, fmt.Errorf("%w: bad phase or reserved bytes", ErrMalformed)
	case m.Type != MsgChunk && count != 0:
		return Message{}, fmt.Errorf("%w: %v with %d floats", ErrMalformed, m.Type, count)
	}
	want := uint64(HeaderSize) + 4*count
	if uint64(len(b)) < want {
		return Message{}, fmt.Errorf("%w: %d bytes, header says %d", ErrTruncated, len(b), want)
	}
	if uint64(len(b)) > want {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, uint64(len(b))-want)
	}
	if count == 0 {
		return m, nil
	}
	p := b[HeaderSize:]
	if nativeLittle && uintptr(unsafe.Pointer(&p[0]))%4 == 0 {
		m.Data = unsafe.Slice((*float32)(unsafe.Pointer(&p[0])), count)
		return m, nil
	}
	m.Data = make([]float32, count)
	for i := range m.Data {
		m.Data[i] = math.Float32frombits(le.Uint32(p[4*i:]))
	}
	return m, nil
}
