package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/pflag"

	"wkd/bench"
)

func init() {
	register(command{name: "bench-net", summary: "measure the ring all-reduce's bus bandwidth against link speed, one NATS server or one per node", group: groupBench,
		long: "Builds a testbed of network namespaces as root: one per host, each joined to a bridge\n" +
			"by a veth pair rate-limited both ways to --link, in the 198.18.0.0/15 benchmarking range.\n" +
			"For each rank count it runs the ring all-reduce with one process per rank on a host of\n" +
			"its own, first through one NATS server on another host, then through a server beside\n" +
			"each rank, the servers routed in a full mesh. The last line is the lowest busbw/link of\n" +
			"the server-per-node runs. The testbed is removed on exit, error or signal; --cleanup\n" +
			"removes what a crashed run left. The hosts use --tcp, cubic by default, whatever the\n" +
			"machine's own default congestion control.",
		flags: benchNetFlags})
}

func benchNetFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	o := bench.NetOptions{Timeout: 10 * time.Minute}
	link := fs.String("link", bench.NetDefaultLink, "rate of every link, each way, as tc writes it (100mbit, 1gbit, 500kbit)")
	ranks := fs.String("ranks", bench.NetDefaultRanks, fmt.Sprintf("comma-separated rank counts in [2, %d]; each rank is a process on a host of its own", bench.NetMaxRanks))
	fs.IntVar(&o.SizeMiB, "size-mib", 8, "all-reduce buffer in MiB")
	fs.IntVar(&o.Reps, "reps", 5, "timed all-reduces per run, after one untimed; the median of the slowest rank's times is reported")
	fs.StringVar(&o.TCP, "tcp", bench.NetDefaultTCP, "TCP congestion control of the hosts' links (\"\" keeps the machine's default)")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "give up after this long (the testbed is removed all the same)")
	cleanup := fs.Bool("cleanup", false, "remove the namespaces a crashed run left (wkdnet*), then exit")
	return func(args []string) error {
		if bench.IsWorker() {
			return bench.RunWorker(os.Stdout)
		}
		var err error
		if o.Link, err = bench.ParseRate(*link); err != nil {
			return fmt.Errorf("--link %q: %w; like %s or 1gbit", *link, err, bench.NetDefaultLink)
		}
		if o.Ranks, err = parseIntList(*ranks, 2, bench.NetMaxRanks); err != nil {
			return fmt.Errorf("--ranks: %w, like %s", err, bench.NetDefaultRanks)
		}
		if err := bench.CheckTCP(o.TCP); err != nil {
			return fmt.Errorf("--tcp %q: %w, like %s", o.TCP, err, bench.NetDefaultTCP)
		}
		switch {
		case o.SizeMiB < 1 || o.SizeMiB > 1024:
			return fmt.Errorf("--size-mib %d: want 1 to 1024, like 8", o.SizeMiB)
		case o.Reps < 1:
			return fmt.Errorf("--reps %d: want at least 1, like 3", o.Reps)
		case o.Timeout <= 0:
			return fmt.Errorf("--timeout %v: want a positive duration, like 10m", o.Timeout)
		}
		ip, tc, err := bench.NetPreflight(os.Geteuid(), exec.LookPath)
		if err != nil {
			return err
		}
		if *cleanup {
			return bench.NetCleanup(ip, os.Stdout)
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Command, o.Server = []string{exe, "bench-net"}, []string{exe, "nats"}
		o.TCPExplicit = fs.Changed("tcp")
		return runBenchNet(o, ip, tc, os.Stdout)
	}
}
