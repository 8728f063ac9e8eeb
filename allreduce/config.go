package allreduce

import (
	"fmt"
	"time"
)

// MaxChunkBytes is the largest payload of one chunk: NATS's default max_payload is 1 MiB.
const MaxChunkBytes = 1 << 20

// Config tunes one Ring and the Reducer that drives it. Build it from a preset and change fields.
type Config struct {
	// ChunkBytes is the largest float32 payload of one chunk, in bytes (a multiple of 4, at most
	// MaxChunkBytes). Larger chunks cost fewer messages per byte; smaller ones pipeline the ring
	// sooner and hold less memory in flight. The frame adds HeaderSize bytes, which must fit the
	// server's max_payload.
	ChunkBytes int
	// TickInterval is the wall time between two Ticks, used by the Reducer only (the Ring counts
	// ticks). Shorter notices failures sooner and costs more wake-ups.
	TickInterval time.Duration
	// TimeoutTicks is how many ticks a neighbour may stay silent during an all-reduce before it
	// fails with ErrTimeout. Must exceed HeartbeatTicks by a margin for scheduling jitter.
	TimeoutTicks int
	// HeartbeatTicks is how often, in ticks, a rank tells each neighbour it is alive when it has
	// sent it nothing else. Smaller detects loss sooner at a few bytes per beat.
	HeartbeatTicks int
	// MaxHeldBytes bounds the payload held for buckets not yet submitted and for the next
	// all-reduce (a neighbour may run one step ahead). Past it the all-reduce fails with
	// ErrHeldOverflow rather than grow without bound. Set it above the model's gradient size.
	MaxHeldBytes int
}

// Defaults, named so that docs and flags can refer to them.
const (
	DefaultChunkBytes     = 512 << 10
	DefaultTickInterval   = 10 * time.Millisecond
	DefaultTimeoutTicks   = 300 // 3 s at DefaultTickInterval
	DefaultHeartbeatTicks = 20  // 200 ms at DefaultTickInterval
	DefaultMaxHeldBytes   = 2 << 30
)

// DefaultConfig is for a LAN cluster: a dead neighbour is noticed in about 3 s.
func DefaultConfig() Config {
	return Config{
		ChunkBytes:     DefaultChunkBytes,
		TickInterval:   DefaultTickInterval,
		TimeoutTicks:   DefaultTimeoutTicks,
		HeartbeatTicks: DefaultHeartbeatTicks,
		MaxHeldBytes:   DefaultMaxHeldBytes,
	}
}

// DefaultLocalConfig is for ranks on one machine: failures are noticed in about 1 s.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.TimeoutTicks = 100
	c.HeartbeatTicks = 10
	return c
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	switch {
	case c.ChunkBytes < 4 || c.ChunkBytes%4 != 0 || c.ChunkBytes > MaxChunkBytes:
		return fmt.Errorf("%w: ChunkBytes %d must be a multiple of 4 in [4, %d]", ErrBadConfig, c.ChunkBytes, MaxChunkBytes)
	case c.TickInterval <= 0:
		return fmt.Errorf("%w: TickInterval %v must be positive", ErrBadConfig, c.TickInterval)
	case c.HeartbeatTicks < 1:
		return fmt.Errorf("%w: HeartbeatTicks %d must be at least 1", ErrBadConfig, c.HeartbeatTicks)
	case c.TimeoutTicks < 2*c.HeartbeatTicks:
		return fmt.Errorf("%w: TimeoutTicks %d must be at least twice HeartbeatTicks (%d)", ErrBadConfig, c.TimeoutTicks, c.HeartbeatTicks)
	case c.MaxHeldBytes < 0:
		return fmt.Errorf("%w: MaxHeldBytes %d must not be negative", ErrBadConfig, c.MaxHeldBytes)
	}
	return nil
}

// View is the membership of one generation, as agreed by the caller (package node).
type View struct {
	Generation uint64 // bumped by the caller on every membership change
	Self       int    // this node's rank, in [0, Size)
	Size       int    // world size n
}

// Validate says what is wrong with v, if anything.
func (v View) Validate() error {
	if v.Size < 1 || v.Self < 0 || v.Self >= v.Size {
		return fmt.Errorf("%w: view rank %d of size %d", ErrBadArgument, v.Self, v.Size)
	}
	return nil
}

// Left is the rank this rank receives chunks from.
func (v View) Left() int { return (v.Self + v.Size - 1) % v.Size }

// Right is the rank this rank sends chunks to.
func (v View) Right() int { return (v.Self + 1) % v.Size }
