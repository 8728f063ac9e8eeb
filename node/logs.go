package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

const (
	// LogSubjectPrefix starts every node's log subject: "wkd.logs.<node>".
	LogSubjectPrefix = "wkd.logs."
	// DefaultShipLines is how many log lines a Shipper holds while NATS is slow or away.
	DefaultShipLines = 4096
	// DefaultDropReport is how often a Shipper logs how many lines it dropped.
	DefaultDropReport = 10 * time.Second
	// shipCloseWait bounds how long Close waits for queued lines to go out.
	shipCloseWait = 2 * time.Second
)

// LogSubject is the NATS subject node's lines are published on.
func LogSubject(node string) string { return LogSubjectPrefix + node }

// Publisher sends one message; *nats.Conn is one. A Shipper calls it from its own goroutine
// only, so it may block without blocking the logger.
type Publisher interface {
	Publish(subject string, data []byte) error
}

// ShipOption changes a Shipper's defaults.
type ShipOption func(*Shipper)

// ShipLines sets how many lines wait for NATS before new lines are dropped.
// Defaults to DefaultShipLines.
func ShipLines(n int) ShipOption {
	return func(s *Shipper) {
		if n > 0 {
			s.ch = make(chan []byte, n)
		}
	}
}

// ShipDropReport sets how often dropped lines are counted in a log line.
// Defaults to DefaultDropReport.
func ShipDropReport(d time.Duration) ShipOption {
	return func(s *Shipper) {
		if d > 0 {
			s.every = d
		}
	}
}

// Shipper is an io.Writer that queues each written log line for NATS and never blocks:
// when its queue is full the line is dropped and counted. Safe for concurrent use.
type Shipper struct {
	pub     Publisher
	subject string
	ch      chan []byte
	every   time.Duration

	dropped atomic.Uint64 // lines lost: queue full or publish failed
	shipped atomic.Uint64
	log     atomic.Pointer[zerolog.Logger]

	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewShipper ships node's lines to LogSubject(node) through pub.
func NewShipper(pub Publisher, node string, opts ...ShipOption) *Shipper {
	s := &Shipper{pub: pub, subject: LogSubject(node), ch: make(chan []byte, DefaultShipLines),
		every: DefaultDropReport, quit: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	go s.run()
	return s
}

// Write queues a copy of p (one log line) or drops it; it always returns len(p), nil so a
// multi-writer keeps writing to stdout.
func (s *Shipper) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	select {
	case s.ch <- b:
	default:
		s.dropped.Add(1)
	}
	return len(p), nil
}

// Dropped is how many lines were lost so far.
func (s *Shipper) Dropped() uint64 { return s.dropped.Load() }

// Shipped is how many lines were handed to the publisher.
func (s *Shipper) Shipped() uint64 { return s.shipped.Load() }

// Close sends what is queued (waiting at most 2 s for a slow publisher) and stops.
func (s *Shipper) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	select {
	case <-s.done:
		return nil
	case <-time.After(shipCloseWait):
		return fmt.Errorf("%w: log shipper: publisher still blocked after %v; %d lines queued", ErrNATS, shipCloseWait, len(s.ch))
	}
}

// attach makes the drop reports go through l (so they reach stdout and NATS alike).
func (s *Shipper) attach(l zerolog.Logger) { s.log.Store(&l) }

func (s *Shipper) run() {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	var reported uint64
	for {
		select {
		case b := <-s.ch:
			s.publish(b)
		case <-t.C:
			reported = s.report(reported)
		case <-s.quit:
			for {
				select {
				case b := <-s.ch:
					s.publish(b)
				default:
					s.report(reported)
					for len(s.ch) > 0 { // the report line itself
						s.publish(<-s.ch)
					}
					return
				}
			}
		}
	}
}

func (s *Shipper) publish(b []byte) {
	if err := s.pub.Publish(s.subject, b); err != nil {
		s.dropped.Add(1)
		return
	}
	s.shipped.Add(1)
}

// report logs the drops since the last report and returns the new total.
func (s *Shipper) report(prev uint64) uint64 {
	d := s.dropped.Load()
	if d == prev {
		return d
	}
	if l := s.log.Load(); l != nil {
		l.Warn().Uint64("dropped", d-prev).Uint64("dropped_total", d).Msg("log lines dropped: NATS slow or away")
	} else {
		fmt.Fprintf(s, `{"level":"warn","dropped":%d,"dropped_total":%d,"message":"log lines dropped: NATS slow or away"}`+"\n", d-prev, d)
	}
	return d
}

// NewLogger logs JSON to out and, when ship is not nil, to NATS through ship. Every line
// carries time and node; the trainer adds rank, generation and step with logger.With().
func NewLogger(nodeName string, out io.Writer, ship *Shipper) zerolog.Logger {
	w := out
	if ship != nil {
		w = zerolog.MultiLevelWriter(out, ship)
	}
	l := zerolog.New(w).With().Timestamp().Str("node", nodeName).Logger()
	if ship != nil {
		ship.attach(l)
	}
	return l
}

// CollectLogs subscribes to every node's log subject on nc and writes each line to out (one
// line per message, in arrival order) until ctx ends. It returns how many lines came from
// each node.
func CollectLogs(ctx context.Context, nc *nats.Conn, out io.Writer) (map[string]int, error) {
	ch := make(chan *nats.Msg, PendingMsgsLimit)
	sub, err := nc.ChanSubscribe(LogSubjectPrefix+">", ch)
	if err != nil {
		return nil, fmt.Errorf("%w: subscribe %s>: %w", ErrNATS, LogSubjectPrefix, err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil { // the subscription is live on the server from here
		return nil, fmt.Errorf("%w: subscribe %s>: %w", ErrNATS, LogSubjectPrefix, err)
	}
	counts := map[string]int{}
	write := func(m *nats.Msg) error {
		counts[strings.TrimPrefix(m.Subject, LogSubjectPrefix)]++
		line := bytes.TrimRight(m.Data, "\n")
		if _, err := out.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("write log line: %w", err)
		}
		return nil
	}
	for {
		select {
		case m := <-ch:
			if err := write(m); err != nil {
				return counts, err
			}
		case <-ctx.Done():
			for { // what already arrived is kept
				select {
				case m := <-ch:
					if err := write(m); err != nil {
						return counts, err
					}
				default:
					return counts, nil
				}
			}
		}
	}
}
