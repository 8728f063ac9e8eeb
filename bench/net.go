package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"wkd/allreduce"
	"wkd/node"
)

// Defaults and fixed choices of bench-net.
const (
	NetDefaultLink  = "100mbit"
	NetDefaultRanks = "2,4,8"
	NetMaxRanks     = 32
	// NetDefaultTCP is the hosts' TCP congestion control: Linux's default. BBR (v1), which
	// some machines set instead, probes for bandwidth in cycles that a token bucket answers
	// with bursts and then queueing; on these links it lost up to a fifth of the ring's
	// bandwidth at 2 and 4 ranks, run to run, where cubic keeps within a percent.
	NetDefaultTCP = "cubic"
	netWarmup     = 1 // untimed all-reduces before the timed ones
	// netPrefix starts every namespace bench-net makes: wkdnet<pid>-<testbed>-<host>.
	netPrefix = "wkdnet"
	// netSubnet holds the hosts' addresses, in the benchmarking range of RFC 2544.
	netSubnet = "198.18.0."
	// netQueue is how long a packet may wait in a link's queue before it is dropped: deep
	// enough that a server's link shared by every rank drops little, shallow enough that a
	// heartbeat behind it comes well within the all-reduce's silence timeout.
	netQueue = 50 * time.Millisecond
	// netReadyWait bounds how long a NATS server may take to accept clients.
	netReadyWait = 15 * time.Second
	// netCleanupWait bounds removing the testbed, which runs after --timeout or a signal.
	netCleanupWait = 30 * time.Second
)

// errNetDenied is the kernel refusing network namespaces to a root that lacks CAP_SYS_ADMIN.
var errNetDenied = errors.New("network namespaces are not permitted here (a container without CAP_SYS_ADMIN?)")

// IsNetDenied reports whether err is the kernel refusing network namespaces.
func IsNetDenied(err error) bool { return errors.Is(err, errNetDenied) }

// NetOptions are bench-net's.
type NetOptions struct {
	// Command runs this program as a worker (it checks IsWorker first); Server runs a NATS
	// server of `wkd nats`, whose flags follow. Both run inside a host's namespace.
	Command, Server []string
	Link            int64  // link rate, bits per second, each way
	Ranks           []int  // rank counts, one run of each topology per count
	SizeMiB         int    // all-reduce buffer
	Reps            int    // timed all-reduces per run; the median is reported
	TCP             string // TCP congestion control on the hosts' routes; "" keeps the machine's
	// TCPExplicit says TCP was asked for: without it, a TCP the kernel has not loaded falls
	// back to the machine's default with a note instead of failing.
	TCPExplicit bool
	Timeout     time.Duration
}

// netTCPName is a congestion control's name: the kernel's are at most 15 characters.
var netTCPName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,14}$`)

// CheckTCP checks a congestion control's name ("" is the machine's default).
func CheckTCP(name string) error {
	if name != "" && !netTCPName.MatchString(name) {
		return errors.New("want the name of a TCP congestion control, as in /proc/sys/net/ipv4/tcp_available_congestion_control")
	}
	return nil
}

// netRateUnits are tc's rate units (tc(8), RATES): bits or bytes per second, SI or IEC prefixes.
var netRateUnits = map[string]float64{
	"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"kibit": 1 << 10, "mibit": 1 << 20, "gibit": 1 << 30, "tibit": 1 << 40,
	"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
	"kibps": 8 << 10, "mibps": 8 << 20, "gibps": 8 << 30, "tibps": 8 << 40,
}

// netParseRate reads a rate as tc does (100mbit, 1gbit, 500kbit, 12.5mbps; a bare number is
// bits per second) and returns bits per second, from 100kbit (an 8 MiB all-reduce then takes
// minutes) to 100gbit.
func ParseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	mult, ok := netRateUnits[t[i:]]
	v, err := strconv.ParseFloat(t[:i], 64)
	if !ok || err != nil {
		return 0, errors.New("want a number and a unit of tc's: bit, kbit, mbit, gbit, or bps, kbps, mbps for bytes")
	}
	bits := v * mult
	if bits < 100e3 || bits > 100e9 || math.IsNaN(bits) {
		return 0, errors.New("want a rate from 100kbit to 100gbit")
	}
	return int64(math.Round(bits)), nil
}

// netFormatRate writes bits per second the way tc prints rates: 100Mbit, 1Gbit, 500Kbit.
func FormatRate(bits int64) string {
	for _, u := range []struct {
		div  int64
		name string
	}{{1e9, "Gbit"}, {1e6, "Mbit"}, {1e3, "Kbit"}} {
		if bits >= u.div && bits%u.div == 0 {
			return fmt.Sprintf("%d%s", bits/u.div, u.name)
		}
	}
	return fmt.Sprintf("%dbit", bits)
}

// netBurst is the token bucket of a link, bytes: 4 ms at the rate (one tick at HZ=250, so
// the bucket never runs dry between two timer wake-ups and the link keeps its rate), and at
// least 128 KiB: more than a 64 KiB GSO packet, which tbf would otherwise cut into frames in
// software, a kernel cost that on two cores limits 8 ranks before the links do.
func netBurst(bits int64) int64 {
	return max(bits/8/250, 128<<10)
}

// netTbf is the tc command that limits the egress of dev to bits per second.
func netTbf(dev string, bits int64) []string {
	return []string{"qdisc", "add", "dev", dev, "root", "tbf", "rate", strconv.FormatInt(bits, 10) + "bit",
		"burst", strconv.FormatInt(netBurst(bits), 10), "latency", strconv.Itoa(int(netQueue.Milliseconds())) + "ms"}
}

// netPreflight checks that bench-net can build its testbed: root, and iproute2's ip and tc.
// It returns their paths.
func NetPreflight(euid int, lookPath func(string) (string, error)) (ip, tc string, err error) {
	if euid != 0 {
		return "", "", errors.New("wkd bench-net needs root (network namespaces); run it with sudo")
	}
	paths := make([]string, 2)
	for i, tool := range []string{"ip", "tc"} {
		if paths[i], err = lookPath(tool); err != nil {
			return "", "", fmt.Errorf("%s not found: install Debian's iproute2 package (apt-get install iproute2)", tool)
		}
	}
	return paths[0], paths[1], nil
}

// netTopology is where a run's NATS servers are.
type netTopology int

const (
	// netOneServer: one server on a host of its own, which every message goes through, so its
	// link carries all the ranks' traffic.
	netOneServer netTopology = iota
	// netServerPerNode: a server beside each rank, routed in a full mesh, so a message
	// crosses one link, from the publisher's host to the subscriber's.
	netServerPerNode
)

func (t netTopology) String() string {
	if t == netOneServer {
		return "one server"
	}
	return "server per node"
}

// bound is the busbw/link the links allow with n ranks: the lone server's link carries every
// rank's traffic, n times one rank's.
func (t netTopology) bound(n int) float64 {
	if t == netOneServer {
		return 1 / float64(n)
	}
	return 1
}

// netResult is one run: one topology, one rank count.
type netResult struct {
	ranks int
	topo  netTopology
	sec   float64 // median over repetitions of the slowest rank's all-reduce time
	// lo and hi are the fastest and slowest repetition, the slowest rank's time in each.
	lo, hi float64
	// cpu is the share of the machine's cores the run's processes used (workers, servers, this
	// process), busy the share busy machine-wide, other processes included; both from when
	// the servers were ready to when the workers ended.
	cpu, busy float64
}

// netCPUBound is the machine-wide busy share above which a run is bound by CPU as much as by
// its links.
const netCPUBound = 0.9

// netBusBW is the bus bandwidth of an all-reduce of bytes over n ranks in sec, bytes/s: each
// rank sends and receives 2(n-1)/n of the buffer.
func netBusBW(bytes, n int, sec float64) float64 {
	return float64(bytes) * 2 * float64(n-1) / float64(n) / sec
}

// netSlowest is each repetition's slowest rank's time: an all-reduce is done when its last
// rank has the sum. Every rank must report every repetition.
func netSlowest(res []Result, ranks, reps int) ([]float64, error) {
	slowest := make([]float64, reps)
	seen := make([]map[int]bool, reps)
	for _, r := range res {
		if r.Kind != "ar" || r.Rep < 0 || r.Rep >= reps || r.Rank < 0 || r.Rank >= ranks {
			return nil, fmt.Errorf("unexpected result %+v", r)
		}
		if seen[r.Rep] == nil {
			seen[r.Rep] = map[int]bool{}
		}
		seen[r.Rep][r.Rank] = true
		slowest[r.Rep] = max(slowest[r.Rep], r.Sec)
	}
	for i, s := range seen {
		if len(s) != ranks {
			return nil, fmt.Errorf("repetition %d: %d of %d ranks reported a time", i, len(s), ranks)
		}
	}
	return slowest, nil
}

// netReport prints the table of results and, last, "busbw/link: X", the lowest over the rank
// counts of the server-per-node runs.
func netReport(w io.Writer, bytes int, link int64, reps int, tcp string, results []netResult) error {
	linkBps := float64(link) / 8
	if tcp == "" {
		tcp = netMachineTCP() + ", the machine's default"
	}
	fmt.Fprintf(w, "ring all-reduce over NATS between network namespaces: %d MiB buffer, every link %s (%.2f MB/s) each way, TCP %s, median of %d reps after %d warmup\n",
		bytes>>20, FormatRate(link), linkBps/1e6, tcp, reps, netWarmup)
	fmt.Fprintf(w, "%5s  %-15s %11s %18s %12s %10s %6s %5s %5s\n", "ranks", "topology", "time", "reps", "busbw", "busbw/link", "bound", "cpu", "busy")
	worst := math.Inf(1)
	var cpuBound []string
	for _, r := range results {
		bus := netBusBW(bytes, r.ranks, r.sec)
		fmt.Fprintf(w, "%5d  %-15s %8.1f ms %18s %7.2f MB/s %10.2f %6.2f %4.0f%% %4.0f%%\n",
			r.ranks, r.topo, r.sec*1e3, fmt.Sprintf("%.0f-%.0f ms", r.lo*1e3, r.hi*1e3), bus/1e6, bus/linkBps, r.topo.bound(r.ranks), r.cpu*100, r.busy*100)
		if r.topo == netServerPerNode {
			worst = min(worst, bus/linkBps)
		}
		if r.busy >= netCPUBound {
			cpuBound = append(cpuBound, fmt.Sprintf("%s with %d ranks", r.topo, r.ranks))
		}
	}
	if math.IsInf(worst, 1) {
		return errors.New("no server-per-node result to report")
	}
	fmt.Fprintf(w, "reps: the fastest and the slowest repetition\n")
	fmt.Fprintf(w, "bound: the busbw/link the links allow (one server: its link carries all n ranks' traffic)\n")
	fmt.Fprintf(w, "cpu: share of the machine's %d cores the run's processes used; busy: share busy machine-wide, other processes included\n", runtime.NumCPU())
	if len(cpuBound) > 0 {
		fmt.Fprintf(w, "bound by CPU as much as by the links (cores over %.0f%% busy): %s\n", netCPUBound*100, strings.Join(cpuBound, ", "))
	}
	fmt.Fprintf(w, "busbw/link: %.2f\n", worst)
	return nil
}

// Net builds the testbed (ip and tc are NetPreflight's paths), runs each rank count through
// one server and through a server per node, and prints the table to w; the last line is
// "busbw/link: X", the lowest of the server-per-node runs. Progress goes to stderr.
func Net(o NetOptions, ip, tc string, w io.Writer) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			name := unix.SignalName(s.(syscall.Signal))
			fmt.Fprintf(os.Stderr, "bench-net: %s: stopping, removing the testbed\n", name)
			cancel(fmt.Errorf("interrupted by %s", name))
		case <-ctx.Done():
		}
	}()
	ctx, cancelT := context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("--timeout %v reached", o.Timeout))
	defer cancelT()

	// A fresh token per run, in the environment every server and worker inherits: a command
	// line shows in ps.
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	token := hex.EncodeToString(tok)
	if err := os.Setenv(node.NATSTokenEnv, token); err != nil {
		return err
	}
	if tcp := netChooseTCP(o.TCP, o.TCPExplicit, netAvailableTCP()); tcp != o.TCP {
		fmt.Fprintf(os.Stderr, "bench-net: this kernel has no %s loaded (it has %s); the hosts keep the machine's %s\n",
			o.TCP, strings.Join(netAvailableTCP(), " "), netMachineTCP())
		o.TCP = tcp
	}
	hosts := 1 // the lone server's
	for _, n := range o.Ranks {
		hosts = max(hosts, n+1)
	}
	fmt.Fprintf(os.Stderr, "bench-net: testbed of %d hosts and a switch, links %s...\n", hosts, FormatRate(o.Link))
	tb, err := newNetTestbed(ctx, ip, tc, netNewPrefix(), hosts, o.Link, o.TCP)
	if err != nil {
		return netCause(ctx, err)
	}
	defer func() {
		if cerr := tb.Close(); cerr != nil {
			fmt.Fprintf(os.Stderr, "bench-net: removing the testbed: %v (wkd bench-net --cleanup retries)\n", cerr)
		}
	}()

	var results []netResult
	for _, n := range o.Ranks {
		for _, topo := range []netTopology{netOneServer, netServerPerNode} {
			fmt.Fprintf(os.Stderr, "bench-net: %s, %d ranks...\n", topo, n)
			r, err := tb.allReduce(ctx, topo, n, o, token)
			if err != nil {
				return fmt.Errorf("%s, %d ranks: %w", topo, n, netCause(ctx, err))
			}
			bus := netBusBW(o.SizeMiB<<20, n, r.sec)
			fmt.Fprintf(os.Stderr, "bench-net: %s, %d ranks: %.1f ms, busbw/link %.2f, cpu %.0f%%, machine %.0f%% busy\n",
				topo, n, r.sec*1e3, bus/(float64(o.Link)/8), r.cpu*100, r.busy*100)
			results = append(results, r)
		}
	}
	return netReport(w, o.SizeMiB<<20, o.Link, o.Reps, o.TCP, results)
}

// netChooseTCP is the congestion control the hosts use: tcp, or "" (the machine's default)
// where tcp was not asked for and the kernel's loaded ones, avail, lack it. One asked for is
// kept: setting it fails with the kernel's list if the kernel cannot load it either.
func netChooseTCP(tcp string, explicit bool, avail []string) string {
	if tcp == "" || explicit || slices.Contains(avail, tcp) {
		return tcp
	}
	return ""
}

// netMachineTCP is the machine's default TCP congestion control, which new namespaces inherit.
func netMachineTCP() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// netAvailableTCP lists the congestion controls the kernel has loaded.
func netAvailableTCP() []string {
	b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	return strings.Fields(string(b))
}

// netCause is err, or why ctx ended (a signal, --timeout) if it has.
func netCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

var netTestbeds atomic.Int32 // testbeds this process made; numbers the next one's prefix

// netNewPrefix is the namespace prefix of a new testbed, unique among live processes:
// wkdnet<pid>-<n>-.
func netNewPrefix() string {
	return netNamePrefix(os.Getpid(), int(netTestbeds.Add(1)-1))
}

func netNamePrefix(pid, n int) string { return fmt.Sprintf("%s%d-%d-", netPrefix, pid, n) }

// netNamePID is the pid in a namespace name that netNamePrefix made, or 0.
func netNamePID(name string) int {
	digits, _, ok := strings.Cut(strings.TrimPrefix(name, netPrefix), "-")
	pid, err := strconv.Atoi(digits)
	if !ok || !strings.HasPrefix(name, netPrefix) || err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// netHostIP is host i's address.
func netHostIP(i int) string { return netSubnet + strconv.Itoa(i+1) }

// netTestbed is a switch namespace holding a bridge, and one namespace per host whose eth0 is
// joined to the bridge by a veth pair, each end's egress limited to the link rate.
type netTestbed struct {
	ip, tc string   // paths of iproute2's tools
	sw     string   // the switch's namespace
	hosts  []string // host i's namespace; its address is netHostIP(i)
	made   []string // namespaces created so far, removed by Close

	mu      sync.Mutex
	servers []*netServer // started; Close stops those still running
}

func newNetTestbed(ctx context.Context, ip, tc, prefix string, hosts int, link int64, tcp string) (*netTestbed, error) {
	tb := &netTestbed{ip: ip, tc: tc, sw: prefix + "sw"}
	for i := range hosts {
		tb.hosts = append(tb.hosts, prefix+"h"+strconv.Itoa(i))
	}
	if err := tb.build(ctx, link, tcp); err != nil {
		return nil, errors.Join(err, tb.Close())
	}
	return tb, nil
}

func (tb *netTestbed) build(ctx context.Context, link int64, tcp string) error {
	addNS := func(ns string) error {
		if err := netExec(ctx, tb.ip, "netns", "add", ns); err != nil {
			return err
		}
		tb.made = append(tb.made, ns)
		return netExec(ctx, tb.ip, "-n", ns, "link", "set", "lo", "up")
	}
	if err := addNS(tb.sw); err != nil {
		return err
	}
	cmds := [][]string{
		{tb.ip, "-n", tb.sw, "link", "add", "br0", "type", "bridge"},
		{tb.ip, "-n", tb.sw, "link", "set", "br0", "up"},
	}
	for i, ns := range tb.hosts {
		if err := addNS(ns); err != nil {
			return err
		}
		port := "h" + strconv.Itoa(i) // the switch's end of host i's veth
		cmds = append(cmds,
			[]string{tb.ip, "-n", tb.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{tb.ip, "-n", tb.sw, "link", "set", port, "master", "br0"},
			append([]string{tb.tc, "-n", tb.sw}, netTbf(port, link)...),
			[]string{tb.ip, "-n", tb.sw, "link", "set", port, "up"},
			[]string{tb.ip, "-n", ns, "addr", "add", netHostIP(i) + "/24", "dev", "eth0"},
			append([]string{tb.tc, "-n", ns}, netTbf("eth0", link)...),
			[]string{tb.ip, "-n", ns, "link", "set", "eth0", "up"},
		)
		if tcp != "" {
			// On the subnet's route rather than as the namespace's default, which only the
			// machine's own namespace may set to an algorithm outside its allowed list.
			cmds = append(cmds, []string{tb.ip, "-n", ns, "route", "replace", netSubnet + "0/24", "dev", "eth0",
				"proto", "kernel", "scope", "link", "src", netHostIP(i), "congctl", tcp})
		}
		if sysctl, err := exec.LookPath("sysctl"); err == nil {
			// The routes idle between all-reduces: without this, each all-reduce would start
			// its flows over from TCP's slow start, which clusters tuned for all-reduce avoid.
			cmds = append(cmds, []string{tb.ip, "netns", "exec", ns, sysctl, "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0"})
		}
	}
	for _, c := range cmds {
		if err := netExec(ctx, c[0], c[1:]...); err != nil {
			if slices.Contains(c, "congctl") && !errors.Is(err, errNetDenied) {
				if !slices.Contains(netAvailableTCP(), tcp) {
					return fmt.Errorf("--tcp %s: not one of this kernel's (%s); name one of those, or --tcp \"\" for the machine's default (%s): %w",
						tcp, strings.Join(netAvailableTCP(), " "), netMachineTCP(), err)
				}
				return fmt.Errorf("setting --tcp %s on the hosts' routes (--tcp \"\" keeps the machine's %s): %w", tcp, netMachineTCP(), err)
			}
			return err
		}
	}
	return nil
}

// netExec runs one ip or tc command; its error has the command's output.
func netExec(ctx context.Context, tool string, args ...string) error {
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	err = fmt.Errorf("%s %s: %v: %s", filepath.Base(tool), strings.Join(args, " "), err, msg)
	if strings.Contains(msg, "Operation not permitted") {
		return fmt.Errorf("%w: %w", errNetDenied, err)
	}
	return err
}

// Close stops the servers, kills whatever else still runs in the testbed, and deletes its
// namespaces, which deletes their veths. It may be called more than once.
func (tb *netTestbed) Close() error {
	tb.mu.Lock()
	servers := tb.servers
	tb.servers = nil
	tb.mu.Unlock()
	for _, s := range servers {
		s.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), netCleanupWait)
	defer cancel()
	var errs []error
	for i := len(tb.made) - 1; i >= 0; i-- {
		errs = append(errs, netRemoveNS(ctx, tb.ip, tb.made[i]))
	}
	tb.made = nil
	return errors.Join(errs...)
}

// netRemoveNS kills the processes in namespace ns and deletes it.
func netRemoveNS(ctx context.Context, ip, ns string) error {
	out, err := exec.CommandContext(ctx, ip, "netns", "pids", ns).Output()
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return netExec(ctx, ip, "netns", "del", ns)
}

// netCleanup deletes the namespaces of bench-net runs that are no longer running.
func NetCleanup(ip string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), netCleanupWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, ip, "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line) // "name" or "name (id: 3)"
		if len(f) > 0 && strings.HasPrefix(f[0], netPrefix) {
			names = append(names, f[0])
		}
	}
	sort.Strings(names)
	removed := 0
	var errs []error
	for _, ns := range names {
		if pid := netNamePID(ns); pid > 0 && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
			fmt.Fprintf(w, "kept %s: its run (pid %d) is still going\n", ns, pid)
			continue
		}
		if err := netRemoveNS(ctx, ip, ns); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(w, "removed %s\n", ns)
		removed++
	}
	fmt.Fprintf(w, "removed %d namespaces\n", removed)
	return errors.Join(errs...)
}

// allReduce runs one topology with n ranks, rank r on host r+1 (host 0 is the lone server's),
// and returns the median of the slowest rank's times.
func (tb *netTestbed) allReduce(ctx context.Context, topo netTopology, n int, o NetOptions, token string) (netResult, error) {
	if n+1 > len(tb.hosts) {
		return netResult{}, fmt.Errorf("%d ranks need %d hosts, the testbed has %d", n, n+1, len(tb.hosts))
	}
	// At the link rate a run takes expect; four times that plus a minute leaves room for a
	// busy machine and catches a ring that never forms (WaitPeers waits without end).
	bytes := float64(o.SizeMiB<<20) * 2 * float64(n-1) / float64(n) / topo.bound(n)
	expect := time.Duration(float64(netWarmup+o.Reps) * bytes / (float64(o.Link) / 8) * float64(time.Second))
	limit := 4*expect + time.Minute
	rctx, cancel := context.WithTimeoutCause(ctx, limit,
		fmt.Errorf("no result within %v (about %v expected at the link rate)", limit.Round(time.Second), expect.Round(time.Second)))
	defer cancel()

	var servers []*netServer
	defer func() { // on an early return
		for _, s := range servers {
			s.stop()
		}
	}()
	const port = "4222"
	// Plaintext NATS (--insecure): no one outside the testbed's namespaces can reach it, and
	// the figure is the transport's, without TLS's CPU.
	urls := make([]string, n)
	switch topo {
	case netOneServer:
		s, err := tb.startServer(o.Server, 0, "--host", "0.0.0.0", "--port", port, "--insecure")
		if err != nil {
			return netResult{}, err
		}
		servers = append(servers, s)
		for r := range urls {
			urls[r] = "nats://" + netHostIP(0) + ":" + port
		}
	case netServerPerNode:
		route := fmt.Sprintf("%s:%d", netHostIP(1), node.DefaultRoutePort)
		for r := range n {
			args := []string{"--host", "0.0.0.0", "--port", port, "--insecure", "--cluster", fmt.Sprintf("%s:%d", netHostIP(r+1), node.DefaultRoutePort)}
			if r > 0 {
				args = append(args, "--routes", route) // gossip completes the mesh
			}
			s, err := tb.startServer(o.Server, r+1, args...)
			if err != nil {
				return netResult{}, err
			}
			servers = append(servers, s)
			urls[r] = "nats://127.0.0.1:" + port
		}
	}
	for _, s := range servers {
		if err := s.waitReady(rctx); err != nil {
			return netResult{}, err
		}
	}
	start := time.Now()
	busy0, total0 := netMachineCPU()

	procs := make([]proc, n)
	for r := range n {
		wk := Worker{Kind: "ar", URL: urls[r], Rank: r, Size: n, SizesM: []int{o.SizeMiB}, Reps: o.Reps, Warmup: netWarmup,
			Chunk: allreduce.DefaultChunkBytes}
		env, err := wk.env(token)
		if err != nil {
			return netResult{}, err
		}
		procs[r] = proc{argv: append([]string{tb.ip, "netns", "exec", tb.hosts[r+1]}, o.Command...), env: env}
	}
	res, cpu, err := runWorkers(rctx, procs)
	if err != nil {
		return netResult{}, netCause(rctx, err)
	}
	slowest, err := netSlowest(res, n, o.Reps)
	if err != nil {
		return netResult{}, err
	}
	wall := time.Since(start).Seconds()
	busy1, total1 := netMachineCPU()
	for _, s := range servers {
		cpu += s.stop()
	}
	servers = nil
	r := netResult{ranks: n, topo: topo, sec: Median(slowest), lo: slices.Min(slowest), hi: slices.Max(slowest),
		cpu: cpu / (wall * float64(runtime.NumCPU()))}
	if total1 > total0 {
		r.busy = float64(busy1-busy0) / float64(total1-total0)
	}
	return r, nil
}

// netMachineCPU is the machine's CPU time so far, busy and in all, in clock ticks (the first
// line of /proc/stat: user nice system idle iowait irq softirq steal ...); zero if unreadable.
func netMachineCPU() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:9] { // guest time is counted in user already
		t, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		total += t
		if i != 3 && i != 4 { // idle, iowait
			busy += t
		}
	}
	return busy, total
}

// netServer is a `wkd nats` process in a host's namespace.
type netServer struct {
	ns     string
	cmd    *exec.Cmd
	ready  chan struct{} // closed when it logged "NATS ready"
	exited chan struct{} // closed when it exited
	once   sync.Once
	cpu    float64 // CPU seconds, once exited

	mu   sync.Mutex
	tail []string // its last log lines, for errors
}

// startServer starts `wkd nats args...` in host i's namespace, the token in its environment.
func (tb *netTestbed) startServer(server []string, host int, args ...string) (*netServer, error) {
	s := &netServer{ns: tb.hosts[host], ready: make(chan struct{}), exited: make(chan struct{})}
	// ip netns exec execs into wkd, so cmd's process is the server itself. Its own process
	// group keeps a terminal's Ctrl-C from it: Close stops it, after the workers.
	s.cmd = exec.Command(tb.ip, slices.Concat([]string{"netns", "exec", s.ns}, server, args)...)
	s.cmd.Stderr = os.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("wkd nats in %s: %w", s.ns, err)
	}
	tb.mu.Lock()
	tb.servers = append(tb.servers, s)
	tb.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			var line struct {
				Message string `json:"message"`
			}
			if !signalled && json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "NATS ready" {
				signalled = true
				close(s.ready)
			}
			s.mu.Lock()
			s.tail = append(s.tail, sc.Text())
			if len(s.tail) > 10 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
		}
		_ = s.cmd.Wait()
		if ps := s.cmd.ProcessState; ps != nil {
			s.cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
		}
		close(s.exited)
	}()
	return s, nil
}

// waitReady waits until the server accepts clients: it logs "NATS ready" once it does.
func (s *netServer) waitReady(ctx context.Context) error {
	t := time.NewTimer(netReadyWait)
	defer t.Stop()
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-s.exited:
		err := fmt.Errorf("wkd nats in %s exited before it was ready", s.ns)
		if ps := s.cmd.ProcessState; ps != nil {
			err = fmt.Errorf("wkd nats in %s exited before it was ready: %v", s.ns, ps)
		}
		return fmt.Errorf("%w; its log ends:\n%s", err, s.logTail())
	case <-t.C:
		return fmt.Errorf("wkd nats in %s not ready within %v; its log ends:\n%s", s.ns, netReadyWait, s.logTail())
	}
}

func (s *netServer) logTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// stop ends the server, SIGTERM then SIGKILL after 5 s, and returns its CPU seconds. Later
// calls only return them.
func (s *netServer) stop() float64 {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
	})
	return s.cpu
}
