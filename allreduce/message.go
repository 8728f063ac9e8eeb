package allreduce

import "fmt"

// Type is the kind of a Message.
type Type uint8

const (
	// MsgChunk carries a slice of one segment of one bucket.
	MsgChunk Type = 1
	// MsgHeartbeat tells a neighbour this rank is alive in Generation. A rank answers the first
	// heartbeat of a neighbour at once, which is how two ranks learn both are subscribed.
	MsgHeartbeat Type = 2
	// MsgAbort tells every peer that this rank gave up the all-reduce (Generation, Step).
	MsgAbort Type = 3
)

func (t Type) String() string {
	switch t {
	case MsgChunk:
		return "chunk"
	case MsgHeartbeat:
		return "heartbeat"
	case MsgAbort:
		return "abort"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Phase is the half of the ring all-reduce a chunk belongs to.
type Phase uint8

const (
	// ReduceScatter chunks carry partial sums; after n-1 steps each rank owns one reduced segment.
	ReduceScatter Phase = 0
	// AllGather chunks carry final values, copied around the ring in n-1 steps.
	AllGather Phase = 1
)

func (p Phase) String() string {
	switch p {
	case ReduceScatter:
		return "reduce-scatter"
	case AllGather:
		return "all-gather"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Message is the one message of the ring. Fields other than Type, From, To, Generation and Step
// are meaningful for MsgChunk only.
type Message struct {
	Type       Type
	From, To   int    // ranks in Generation's view
	Generation uint64 // view generation
	Step       uint64 // training step: one all-reduce per step
	Bucket     int    // bucket index within the step
	BucketLen  int    // elements in the whole bucket, so a shape mismatch is caught, not summed
	Phase      Phase
	RingStep   int // 0..n-2 within the phase
	Segment    int // which of the n segments of the bucket
	Offset     int // first element of the chunk within the segment
	// Sent and PrevSent, in heartbeats to the right neighbour only: chunks sent to it in Step
	// and in the all-reduce before, so that it can tell lost chunks from a slow peer.
	Sent, PrevSent int
	// Data is the chunk's payload. In messages from Ready it aliases the bucket and is valid until
	// the next call into the Ring; from Unmarshal it may alias the frame.
	Data []float32 // (chunk elements)
}

func (m Message) String() string {
	if m.Type != MsgChunk {
		return fmt.Sprintf("%v %d->%d gen=%d step=%d sent=%d prev=%d", m.Type, m.From, m.To, m.Generation, m.Step, m.Sent, m.PrevSent)
	}
	return fmt.Sprintf("chunk %d->%d gen=%d step=%d bucket=%d/%d %v rs=%d seg=%d off=%d n=%d",
		m.From, m.To, m.Generation, m.Step, m.Bucket, m.BucketLen, m.Phase, m.RingStep, m.Segment, m.Offset, len(m.Data))
}
