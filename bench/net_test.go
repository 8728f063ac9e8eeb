package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNetParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		bits int64
	}{
		{"100mbit", 100e6}, {"1gbit", 1e9}, {"500kbit", 500e3}, {"1Gbit", 1e9}, {" 2.5mbit ", 2.5e6},
		{"1mibit", 1 << 20}, {"250000", 250e3}, {"100gbit", 100e9},
		{"12.5mbps", 100e6}, {"100kbps", 800e3}, {"100kibps", 800 << 10}, // bps: bytes per second
	} {
		got, err := ParseRate(c.in)
		if err != nil || got != c.bits {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", c.in, got, err, c.bits)
		}
	}
	for _, bad := range []string{"", "fast", "mbit", "100 mbits", "-5mbit", "1.2.3mbit", "99kbit", "101gbit", "100mb"} {
		if got, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %d, want an error", bad, got)
		}
	}
	for bits, want := range map[int64]string{100e6: "100Mbit", 1e9: "1Gbit", 500e3: "500Kbit", 1500e3: "1500Kbit", 123456: "123456bit"} {
		if got := FormatRate(bits); got != want {
			t.Errorf("FormatRate(%d) = %q, want %q", bits, got, want)
		}
	}
}

// The token bucket must hold one timer tick (4 ms at HZ=250) of traffic at every rate, or a
// fast link runs below its rate.
func TestNetBurst(t *testing.T) {
	for _, bits := range []int64{100e3, 50e6, 100e6, 1e9, 10e9} {
		if b := netBurst(bits); float64(b) < float64(bits)/8*0.004 || b <= 64<<10 {
			t.Errorf("netBurst(%s) = %d bytes, less than 4 ms of traffic, or not above a 64 KiB GSO packet", FormatRate(bits), b)
		}
	}
	args := strings.Join(netTbf("eth0", 100e6), " ")
	if want := "qdisc add dev eth0 root tbf rate 100000000bit burst 131072 latency 50ms"; args != want {
		t.Errorf("netTbf = %q, want %q", args, want)
	}
}

func TestNetPreflight(t *testing.T) {
	found := func(name string) (string, error) { return "/usr/sbin/" + name, nil }
	if _, _, err := NetPreflight(1000, found); err == nil || err.Error() != "wkd bench-net needs root (network namespaces); run it with sudo" {
		t.Errorf("not root: %v", err)
	}
	noTC := func(name string) (string, error) {
		if name == "tc" {
			return "", exec.ErrNotFound
		}
		return found(name)
	}
	if _, _, err := NetPreflight(0, noTC); err == nil || !strings.Contains(err.Error(), "tc not found") || !strings.Contains(err.Error(), "iproute2") {
		t.Errorf("no tc: %v", err)
	}
	if ip, tc, err := NetPreflight(0, found); err != nil || ip != "/usr/sbin/ip" || tc != "/usr/sbin/tc" {
		t.Errorf("all there: %q %q %v", ip, tc, err)
	}
}

func TestNetNames(t *testing.T) {
	p := netNamePrefix(4242, 0)
	if p != "wkdnet4242-0-" || netNamePrefix(4242, 1) == p {
		t.Errorf("prefixes %q, %q: want wkdnet<pid>-<n>-, distinct per testbed", p, netNamePrefix(4242, 1))
	}
	if a, b := netNewPrefix(), netNewPrefix(); a == b || !strings.HasPrefix(a, fmt.Sprintf("wkdnet%d-", os.Getpid())) {
		t.Errorf("netNewPrefix: %q then %q, want distinct, with this pid", a, b)
	}
	for name, pid := range map[string]int{"wkdnet4242-0-h3": 4242, "wkdnet7-12-sw": 7, "wkdnetx-0-h1": 0, "wkdnet-0-h1": 0, "other1-0-h1": 0} {
		if got := netNamePID(name); got != pid {
			t.Errorf("netNamePID(%q) = %d, want %d", name, got, pid)
		}
	}
	// Addresses stay in the benchmarking range.
	if ip := net.ParseIP(netHostIP(NetMaxRanks)); ip == nil || !(&net.IPNet{IP: net.IP{198, 18, 0, 0}, Mask: net.CIDRMask(15, 32)}).Contains(ip) {
		t.Errorf("netHostIP(%d) = %s, outside 198.18.0.0/15", NetMaxRanks, netHostIP(NetMaxRanks))
	}
}

func TestNetSlowest(t *testing.T) {
	ar := func(rep, rank int, sec float64) Result {
		return Result{Kind: "ar", Nodes: 3, Bytes: 8 << 20, Rep: rep, Rank: rank, Sec: sec}
	}
	// The slowest rank of each rep: 3, 9, 5; their median is 5 (the mean of all is not, nor
	// is the median of the fastest or of every time).
	res := []Result{ar(0, 0, 1), ar(0, 1, 3), ar(0, 2, 2), ar(1, 0, 9), ar(1, 1, 1), ar(1, 2, 1), ar(2, 2, 5), ar(2, 0, 4), ar(2, 1, 4)}
	if got, err := netSlowest(res, 3, 3); err != nil || !slices.Equal(got, []float64{3, 9, 5}) || Median(got) != 5 {
		t.Errorf("netSlowest = %v, %v; want [3 9 5], median 5", got, err)
	}
	if _, err := netSlowest(res[:8], 3, 3); err == nil {
		t.Error("a rank missing from a rep: no error")
	}
	if _, err := netSlowest(append(res[:8:8], ar(2, 5, 1)), 3, 3); err == nil {
		t.Error("a rank outside the world: no error")
	}
	raw := ar(2, 1, 4)
	raw.Kind = "nats"
	if _, err := netSlowest(append(res[:8:8], raw), 3, 3); err == nil {
		t.Error("a raw NATS result among the all-reduce's: no error")
	}
	if _, err := netSlowest(append(res, ar(3, 0, 1)), 3, 3); err == nil {
		t.Error("a rep too many: no error")
	}
}

func TestNetReport(t *testing.T) {
	const size, link = 8 << 20, 100e6 // 12.5 MB/s
	// 2 ranks move the buffer once: 8 MiB in 0.7 s is 11.98 MB/s, 0.96 of the link. 4 ranks
	// move it 1.5 times: 1.5 s gives 8.39 MB/s, 0.67. One server is slower, and not counted.
	results := []netResult{
		{ranks: 2, topo: netOneServer, sec: 1.4, lo: 1.3, hi: 1.5, cpu: 0.3, busy: 0.4},
		{ranks: 2, topo: netServerPerNode, sec: 0.7, lo: 0.6994, hi: 0.7206, cpu: 0.25, busy: 0.3},
		{ranks: 4, topo: netOneServer, sec: 4.0, lo: 3.9, hi: 4.1, cpu: 0.5, busy: 0.6},
		{ranks: 4, topo: netServerPerNode, sec: 1.5, lo: 1.4, hi: 1.6, cpu: 0.5, busy: 0.97},
		// Last and not the lowest; its processes used most of the cores while the machine
		// was not busier: bound by neither.
		{ranks: 8, topo: netServerPerNode, sec: 1.3, lo: 1.2, hi: 1.4, cpu: 0.95, busy: 0.8},
	}
	var b bytes.Buffer
	if err := netReport(&b, size, link, 3, "cubic", results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; last != "busbw/link: 0.67" {
		t.Errorf("last line %q, want %q\n%s", last, "busbw/link: 0.67", b.String())
	}
	for _, want := range []string{
		"ring all-reduce over NATS between network namespaces: 8 MiB buffer, every link 100Mbit (12.50 MB/s) each way, TCP cubic, median of 3 reps after 1 warmup",
		"    2  server per node    700.0 ms         699-721 ms   11.98 MB/s       0.96   1.00   25%   30%",
		"    4  one server        4000.0 ms       3900-4100 ms    3.15 MB/s       0.25   0.25   50%   60%",
		"    4  server per node   1500.0 ms       1400-1600 ms    8.39 MB/s       0.67   1.00   50%   97%",
		"    8  server per node   1300.0 ms       1200-1400 ms   11.29 MB/s       0.90   1.00   95%   80%",
		"bound by CPU as much as by the links (cores over 90% busy): server per node with 4 ranks",
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no line %q in\n%s", want, b.String())
		}
	}
	if err := netReport(io.Discard, size, link, 3, "cubic", results[:1]); err == nil {
		t.Error("no server-per-node result: no error")
	}
}

func TestCheckTCP(t *testing.T) {
	for _, ok := range []string{"", "cubic", "bbr", "reno", "dctcp", "highspeed", "abcdefghijklmno"} {
		if err := CheckTCP(ok); err != nil {
			t.Errorf("CheckTCP(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"cubic;reboot", "Cubic", "x y", "-bbr", "1bbr", "abcdefghijklmnop", "cubic\n"} {
		if err := CheckTCP(bad); err == nil {
			t.Errorf("CheckTCP(%q): no error", bad)
		}
	}
}

// The hosts keep the congestion control asked for; the default one falls back to the
// machine's where the kernel has not loaded it.
func TestNetChooseTCP(t *testing.T) {
	avail := []string{"reno", "bbr"}
	for _, c := range []struct {
		tcp      string
		explicit bool
		want     string
	}{
		{"cubic", false, ""}, {"cubic", true, "cubic"}, {"bbr", false, "bbr"}, {"bbr", true, "bbr"}, {"", false, ""}, {"", true, ""},
	} {
		if got := netChooseTCP(c.tcp, c.explicit, avail); got != c.want {
			t.Errorf("netChooseTCP(%q, explicit %v) = %q, want %q", c.tcp, c.explicit, got, c.want)
		}
	}
	if got := netChooseTCP("cubic", false, []string{"reno", "cubic"}); got != "cubic" {
		t.Errorf("cubic loaded: %q", got)
	}
	// The machine's own default is always loaded: the list is read.
	if !slices.Contains(netAvailableTCP(), netMachineTCP()) {
		t.Errorf("the kernel's list %v lacks the machine's default %q", netAvailableTCP(), netMachineTCP())
	}
}

// netTools skips the test unless it runs as root with iproute2's ip and tc, and returns their
// paths.
func netTools(t *testing.T) (ip, tc string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	ip, tc, err := NetPreflight(0, exec.LookPath)
	if err != nil {
		t.Skip(err)
	}
	return ip, tc
}

// A 2-host testbed really limits each end of a link: a TCP transfer between the hosts takes
// as long as the rate says, with both limits, with the sender's end alone and with the switch's
// end alone; its connections use the congestion control asked for, whatever the machine's
// default; and Close leaves no namespace behind.
func TestNetTestbedLimitsRate(t *testing.T) {
	ip, tc := netTools(t)
	const link = 50e6 // bits/s
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prefix := netNewPrefix()
	tcp := NetDefaultTCP
	if !slices.Contains(netAvailableTCP(), tcp) {
		t.Logf("this kernel has no %s (it has %v): the congestion control is not checked", tcp, netAvailableTCP())
		tcp = ""
	}
	tb, err := newNetTestbed(ctx, ip, tc, prefix, 2, link, tcp)
	if errors.Is(err, errNetDenied) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tb.Close(); err != nil {
			t.Error(err)
		}
		out, _ := exec.Command(ip, "netns", "list").Output()
		if strings.Contains(string(out), prefix) {
			t.Errorf("namespaces left after Close:\n%s", out)
		}
	}()

	// Each end of each veth has its token bucket at the link rate.
	for i, ns := range tb.hosts {
		for _, end := range [][2]string{{ns, "eth0"}, {tb.sw, fmt.Sprintf("h%d", i)}} {
			out, err := exec.Command(tc, "-n", end[0], "qdisc", "show", "dev", end[1]).Output()
			if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "rate "+FormatRate(link)) {
				t.Errorf("%s in %s: qdisc %q (%v), want tbf at rate %s", end[1], end[0], out, err, FormatRate(link))
			}
		}
	}

	// The routes idle between all-reduces; each must not start over from slow start.
	for _, ns := range tb.hosts {
		out, err := exec.Command(ip, "netns", "exec", ns, "sysctl", "-n", "net.ipv4.tcp_slow_start_after_idle").Output()
		if err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Errorf("%s: tcp_slow_start_after_idle %q (%v), want 0", ns, out, err)
		}
	}

	const payload = 3 << 20
	// The bucket lets a burst through at once at each limited end; TCP/IP headers only slow it.
	least := time.Duration(float64(payload-2*netBurst(link)) / (link / 8) * float64(time.Second))
	check := func(what string, from, to int) {
		t.Helper()
		d, cc, err := netTransfer(tb.hosts[from], tb.hosts[to], netHostIP(to), payload)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if tcp != "" && cc != tcp {
			t.Errorf("%s: the sender's congestion control is %q, want %q (machine's default: %s)", what, cc, tcp, netMachineTCP())
		}
		t.Logf("%s: %d MiB in %v (%.1f Mbit/s)", what, payload>>20, d.Round(time.Millisecond), payload*8/d.Seconds()/1e6)
		if d < least || d > 4*least+time.Second {
			t.Errorf("%s: %d MiB took %v, want %v to %v at %s", what, payload>>20, d, least, 4*least+time.Second, FormatRate(link))
		}
	}
	check("both ends limited", 0, 1)
	// Lift host 1's limits: host 0's end alone limits 0 -> 1, the switch's end towards host 0
	// alone limits 1 -> 0.
	for _, c := range [][]string{{tc, "-n", tb.sw, "qdisc", "del", "dev", "h1", "root"}, {tc, "-n", tb.hosts[1], "qdisc", "del", "dev", "eth0", "root"}} {
		if err := netExec(ctx, c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	check("host end alone", 0, 1)
	check("switch end alone", 1, 0)
}

// A congestion control the kernel lacks fails the testbed with the kernel's list and a way
// out, and leaves no namespace behind.
func TestNetTestbedBadTCP(t *testing.T) {
	ip, tc := netTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prefix := netNewPrefix()
	tb, err := newNetTestbed(ctx, ip, tc, prefix, 2, 50e6, "nosuchcc")
	if errors.Is(err, errNetDenied) {
		t.Skip(err)
	}
	if err == nil {
		tb.Close()
		t.Fatal("a testbed with congestion control nosuchcc: no error")
	}
	for _, want := range []string{"--tcp nosuchcc", netMachineTCP(), `--tcp ""`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if out, _ := exec.Command(ip, "netns", "list").Output(); strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left after a failed build:\n%s", out)
	}
}

// netTransfer sends n bytes over TCP from namespace from to addr in namespace to, and returns
// the time until the receiver has them all and the sender's congestion control.
func netTransfer(from, to, addr string, n int) (time.Duration, string, error) {
	var ln net.Listener
	if err := inNetns(to, func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(addr, "0")); return }); err != nil {
		return 0, "", err
	}
	defer ln.Close()
	deadline := time.Now().Add(15 * time.Second)
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		m, err := io.Copy(io.Discard, c)
		if err == nil && m != int64(n) {
			err = fmt.Errorf("received %d bytes of %d", m, n)
		}
		got <- err
	}()
	var c net.Conn
	d := net.Dialer{Deadline: deadline}
	if err := inNetns(from, func() (err error) { c, err = d.Dial("tcp", ln.Addr().String()); return }); err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, "", err
	}
	var cc string
	var ccErr error
	if err := raw.Control(func(fd uintptr) { cc, ccErr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION) }); err != nil {
		return 0, "", err
	}
	if ccErr != nil {
		return 0, "", ccErr
	}
	t0 := time.Now()
	if _, err := c.Write(make([]byte, n)); err != nil {
		return 0, "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, "", err
	}
	if err := <-got; err != nil {
		return 0, "", err
	}
	return time.Since(t0), strings.TrimRight(cc, "\x00"), nil
}

// inNetns runs f on an OS thread moved into network namespace ns; the sockets f opens stay in
// ns wherever they are used from. The thread is never unlocked, so it ends with f's goroutine
// and no other goroutine runs in ns.
func inNetns(ns string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := syscall.Open("/run/netns/"+ns, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer syscall.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- f()
	}()
	return <-done
}
