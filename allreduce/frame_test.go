package allreduce

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Type: MsgChunk, From: 3, To: 4, Generation: 1<<40 + 5, Step: 99, Bucket: 7, BucketLen: 1000, Phase: AllGather,
			RingStep: 2, Segment: 3, Offset: 256, Data: []float32{1, -2.5, float32(math.Inf(1)), math.SmallestNonzeroFloat32}},
		{Type: MsgHeartbeat, From: 0, To: 1, Generation: 2, Step: 3, Sent: 17, PrevSent: 40},
		{Type: MsgAbort, From: 1, To: 0, Generation: 2, Step: 3},
	} {
		f, err := Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if len(f) != FrameSize(&m) {
			t.Fatalf("%v: frame %d bytes, FrameSize %d", m, len(f), FrameSize(&m))
		}
		got, err := Unmarshal(f)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if len(m.Data) == 0 {
			m.Data = nil
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %v\nwant %v", got, m)
		}
		// Every truncation is an error, never a panic.
		for i := 0; i < len(f); i++ {
			if _, err := Unmarshal(f[:i]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("%v cut at %d: %v, want ErrTruncated", m.Type, i, err)
			}
		}
	}
	// Payload readable from an unaligned frame too (copy path).
	m := Message{Type: MsgChunk, From: 1, To: 2, Data: []float32{1, 2, 3}}
	f, _ := Marshal(&m)
	odd := append([]byte{0}, f...)[1:]
	got, err := Unmarshal(odd)
	if err != nil || !reflect.DeepEqual(got.Data, m.Data) {
		t.Fatalf("unaligned frame: %v %v", got.Data, err)
	}
}

func TestFrameMalformed(t *testing.T) {
	m := Message{Type: MsgChunk, From: 1, To: 2, Data: []float32{1}}
	good, _ := Marshal(&m)
	for name, mut := range map[string]func(b []byte) []byte{
		"magic":        func(b []byte) []byte { b[0] = 'x'; return b },
		"version":      func(b []byte) []byte { b[2] = 9; return b },
		"type":         func(b []byte) []byte { b[3] = 0; return b },
		"phase":        func(b []byte) []byte { b[36] = 2; return b },
		"reserved":     func(b []byte) []byte { b[61] = 1; return b },
		"trailing":     func(b []byte) []byte { return append(b, 0) },
		"hb with data": func(b []byte) []byte { b[3] = byte(MsgHeartbeat); return b },
	} {
		b := mut(append([]byte(nil), good...))
		if _, err := Unmarshal(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Marshal(&Message{Type: MsgChunk, From: -1}); !errors.Is(err, ErrBadArgument) {
		t.Errorf("negative rank: %v, want ErrBadArgument", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, m := range []Message{
		{Type: MsgChunk, From: 1, To: 2, Generation: 3, Step: 4, Bucket: 5, BucketLen: 6, Phase: AllGather, RingStep: 1, Segment: 2, Offset: 3, Data: []float32{1, 2}},
		{Type: MsgHeartbeat, Sent: 3},
		{Type: MsgAbort},
	} {
		b, _ := Marshal(&m)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Unmarshal(b)
		if err != nil {
			return
		}
		// What parses must marshal back to the same bytes.
		again, err := Marshal(&m)
		if err != nil {
			t.Fatalf("parsed %v does not marshal: %v", m, err)
		}
		if string(again) != string(b) {
			t.Fatalf("round trip changed the frame")
		}
	})
}
