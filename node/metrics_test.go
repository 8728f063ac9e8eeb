package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMetricsServed(t *testing.T) {
	pub := &stuckPublisher{release: make(chan struct{})}
	defer close(pub.release)
	ship := NewShipper(pub, "n1", ShipLines(1))
	for i := 0; i < 10; i++ {
		ship.Write([]byte("x\n"))
	}
	m := NewMetrics("n1", ship)
	m.ObserveStep(250*time.Millisecond, 4)
	m.ObserveAllReduce(8<<20, 100*time.Millisecond)
	m.SetLoss("G_L1", 0.5)
	m.SetLoss("wkd", 0.125)
	m.SetView(View{Generation: 7, Members: make([]Member, 3), Self: 2})
	srv, err := m.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		`wkd_step_seconds_count{node="n1"} 1`,
		`wkd_images_per_second{node="n1"} 16`,
		`wkd_allreduce_bytes_per_second{node="n1"} 8.388608e+07`,
		`wkd_allreduce_seconds_bucket{node="n1",le="0.128"} 1`,
		`wkd_loss{name="G_L1",node="n1"} 0.5`,
		`wkd_loss{name="wkd",node="n1"} 0.125`,
		`wkd_view_members{node="n1"} 3`,
		`wkd_view_generation{node="n1"} 7`,
		`wkd_view_rank{node="n1"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// 10 writes into a 1-line queue whose publisher is stuck: 8 or 9 dropped.
	if !strings.Contains(body, `wkd_log_lines_dropped_total{node="n1"} 8`) && !strings.Contains(body, `wkd_log_lines_dropped_total{node="n1"} 9`) {
		t.Errorf("dropped lines not exported:\n%s", grepLines(body, "dropped"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
