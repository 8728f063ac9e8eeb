package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// AllreduceOptions are bench-allreduce's: the ring all-reduce over one loopback NATS server,
// against raw NATS pub-sub and raw TCP on the same machine.
type AllreduceOptions struct {
	// Command runs this program as a worker (it checks IsWorker first), like
	// {"/usr/bin/wkd", "bench-allreduce"}.
	Command      []string
	Nodes, Sizes []int // ranks per run; buffer sizes in MiB
	Reps, Warmup int
	Chunk        int // all-reduce chunk payload, bytes
	// RawMiB is sent per repetition by the raw NATS and TCP peers, in RawMsgKiB messages.
	RawMiB, RawMsgKiB int
	Timeout           time.Duration
}

// MaxPayload is the server's largest message: raw NATS's 1 MiB messages and chunks up to
// allreduce.MaxChunkBytes fit.
const MaxPayload = 8 << 20

// Allreduce runs the benchmark, progress on stderr, and prints its table to w; the last line
// is "busbw/nats: X", the all-reduce's bus bandwidth over raw NATS's at the last world size
// and buffer listed (the largest of the defaults).
func Allreduce(o AllreduceOptions, w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	token := hex.EncodeToString(tok)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Authorization: token, NoLog: true, NoSigs: true,
		MaxPayload: MaxPayload, MaxPending: 1 << 30})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server did not start within 10 s")
	}
	worker := func(kind string, rank, size int, waitFor string) (proc, error) {
		wk := Worker{Kind: kind, URL: srv.ClientURL(), Rank: rank, Size: size, SizesM: o.Sizes, Reps: o.Reps, Warmup: o.Warmup,
			Chunk: o.Chunk, RawBytes: o.RawMiB << 20, MsgBytes: o.RawMsgKiB << 10}
		env, err := wk.env(token)
		return proc{argv: o.Command, env: env, waitFor: waitFor}, err
	}

	// Raw NATS is measured before and after the all-reduce runs and the median taken over both,
	// so a load change on a shared machine shifts both sides of the ratio alike.
	var m arMeasured
	rawNATS := func() error {
		fmt.Fprintf(os.Stderr, "raw NATS pub-sub...\n")
		sub, err := worker("sub", 1, 2, "ready")
		if err != nil {
			return err
		}
		pub, err := worker("pub", 0, 2, "")
		if err != nil {
			return err
		}
		res, cpu, err := runWorkers(ctx, []proc{sub, pub})
		if err != nil {
			return fmt.Errorf("raw NATS: %w", err)
		}
		m.natsCPU += cpu
		m.natsBytes += float64((o.Warmup + o.Reps) * (o.RawMiB << 20))
		if len(res) == 0 {
			return errors.New("raw NATS: no result from the publisher")
		}
		for _, x := range res {
			m.natsSec = append(m.natsSec, x.Sec)
		}
		return nil
	}
	if err := rawNATS(); err != nil {
		return err
	}

	m.perRep = map[arKey]map[int]float64{}
	for _, n := range o.Nodes {
		fmt.Fprintf(os.Stderr, "all-reduce: %d ranks...\n", n)
		procs := make([]proc, n)
		for r := range procs {
			var err error
			if procs[r], err = worker("ar", r, n, ""); err != nil {
				return err
			}
		}
		res, cpu, err := runWorkers(ctx, procs)
		if err != nil {
			return fmt.Errorf("all-reduce with %d ranks: %w", n, err)
		}
		m.arCPU += cpu
		for _, s := range o.Sizes {
			m.arBytes += float64((o.Warmup+o.Reps)*2*(n-1)) * float64(s<<20)
		}
		for _, x := range res {
			k := arKey{x.Nodes, x.Bytes}
			if m.perRep[k] == nil {
				m.perRep[k] = map[int]float64{}
			}
			m.perRep[k][x.Rep] = max(m.perRep[k][x.Rep], x.Sec)
		}
	}
	if err := rawNATS(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "raw TCP...\n")
	if m.tcpSec, err = rawTCP(ctx, o.RawMiB<<20, o.Warmup, o.Reps); err != nil {
		return fmt.Errorf("raw TCP: %w", err)
	}
	return allreduceReport(w, o, m)
}

// arKey is one all-reduce series: world size and buffer bytes.
type arKey struct{ nodes, bytes int }

// arMeasured is what bench-allreduce measured.
type arMeasured struct {
	perRep          map[arKey]map[int]float64 // per series and repetition, the slowest rank's seconds
	natsSec, tcpSec []float64                 // raw NATS's and raw TCP's repetitions
	// CPU seconds, and bytes published, of the all-reduce runs and of raw NATS.
	arCPU, arBytes, natsCPU, natsBytes float64
}

// allreduceReport prints the table of m and, last, "busbw/nats: X" at the last series listed.
func allreduceReport(w io.Writer, o AllreduceOptions, m arMeasured) error {
	if len(m.natsSec) == 0 || len(m.tcpSec) == 0 {
		return errors.New("no raw NATS or raw TCP time to compare with")
	}
	raw := float64(o.RawMiB << 20)
	natsBW, tcpBW := raw/Median(m.natsSec), raw/Median(m.tcpSec)
	fmt.Fprintf(w, "ring all-reduce over NATS: embedded nats-server on 127.0.0.1, one process per rank, chunk %d KiB, median of %d reps\n", o.Chunk>>10, o.Reps)
	fmt.Fprintf(w, "%6s %9s %11s %12s %12s\n", "nodes", "size", "time", "algbw", "busbw")
	var ratioBus float64
	ratioAt := ""
	for _, n := range o.Nodes {
		for _, s := range o.Sizes {
			reps := m.perRep[arKey{n, s << 20}]
			var secs []float64
			for _, v := range reps {
				secs = append(secs, v)
			}
			if len(secs) == 0 {
				return fmt.Errorf("no result for %d ranks, %d MiB", n, s)
			}
			t := Median(secs)
			alg := float64(s<<20) / t
			bus := alg * 2 * float64(n-1) / float64(n)
			fmt.Fprintf(w, "%6d %5d MiB %8.2f ms %7.3f GB/s %7.3f GB/s\n", n, s, t*1e3, alg/1e9, bus/1e9)
			if n == o.Nodes[len(o.Nodes)-1] && s == o.Sizes[len(o.Sizes)-1] {
				ratioBus, ratioAt = bus, fmt.Sprintf("%d ranks, %d MiB", n, s)
			}
		}
	}
	fmt.Fprintf(w, "raw NATS pub-sub, 1 publisher, 1 subscriber, %d MiB in %d KiB messages: %.3f GB/s (median of %d reps, before and after)\n",
		o.RawMiB, o.RawMsgKiB, natsBW/1e9, len(m.natsSec))
	fmt.Fprintf(w, "raw TCP over loopback, %d MiB: %.3f GB/s\n", o.RawMiB, tcpBW/1e9)
	// CPU per byte published does not depend on how busy the machine is: the all-reduce
	// publishes 2(n-1) times the buffer per all-reduce, raw NATS the buffer once.
	fmt.Fprintf(w, "CPU per GB published (workers and server): all-reduce %.2f s/GB, raw NATS %.2f s/GB\n",
		m.arCPU/(m.arBytes/1e9), m.natsCPU/(m.natsBytes/1e9))
	fmt.Fprintf(w, "ratio taken at %s\n", ratioAt)
	fmt.Fprintf(w, "busbw/nats: %.2f\n", ratioBus/natsBW)
	return nil
}

// rawTCP times sending total bytes over one loopback TCP connection, writer and reader in
// this process, in 1 MiB writes, until the reader acknowledges; warmup rounds are not timed.
func rawTCP(ctx context.Context, total, warmup, reps int) ([]float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	rounds := warmup + reps
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for r := 0; r < rounds; r++ {
			for got := 0; got < total; {
				n, err := c.Read(buf[:min(len(buf), total-got)])
				if err != nil {
					errc <- err
					return
				}
				got += n
			}
			if _, err := c.Write([]byte{1}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg, ack := make([]byte, 1<<20), make([]byte, 1)
	var secs []float64
	for r := 0; r < rounds; r++ {
		t0 := time.Now()
		for sent := 0; sent < total; sent += len(msg) {
			if _, err := c.Write(msg[:min(len(msg), total-sent)]); err != nil {
				return nil, err
			}
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			return nil, err
		}
		if r >= warmup {
			secs = append(secs, time.Since(t0).Seconds())
		}
	}
	return secs, <-errc
}
