package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds one node's Prometheus metrics in a registry of its own (several nodes may run
// in one process in tests). Every metric carries the constant label node. Safe for concurrent
// use.
type Metrics struct {
	Registry *prometheus.Registry

	stepSeconds      prometheus.Histogram
	allreduceSeconds prometheus.Histogram
	allreduceBytes   prometheus.Counter
	allreduceBW      prometheus.Gauge
	losses           *prometheus.GaugeVec
	imagesPerSec     prometheus.Gauge
	members          prometheus.Gauge
	generation       prometheus.Gauge
	rank             prometheus.Gauge
	steps            prometheus.Counter
}

// NewMetrics registers wkd's metrics for node, plus Go runtime and process metrics. ship may
// be nil; when given, its dropped lines are exported as wkd_log_lines_dropped_total.
func NewMetrics(node string, ship *Shipper) *Metrics {
	reg := prometheus.NewRegistry()
	f := factory{reg: reg, labels: prometheus.Labels{"node": node}}
	m := &Metrics{
		Registry: reg,
		stepSeconds: f.histogram("wkd_step_seconds", "Wall time of one training step (forward, backward, all-reduce, update).",
			prometheus.ExponentialBuckets(0.005, 2, 14)), // 5 ms .. 41 s
		allreduceSeconds: f.histogram("wkd_allreduce_seconds", "Wall time of one bucket's ring all-reduce.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)), // 0.5 ms .. 16 s
		allreduceBytes: f.counter("wkd_allreduce_bytes_total", "Gradient bytes all-reduced (per node, payload only)."),
		allreduceBW:    f.gauge("wkd_allreduce_bytes_per_second", "Bandwidth of the last all-reduce: bytes reduced / wall time."),
		losses: f.register(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wkd_loss",
			Help: "Latest value of each loss term, by name (G_GAN, G_L1, wkd, D_real, ...).", ConstLabels: f.labels},
			[]string{"name"})).(*prometheus.GaugeVec),
		imagesPerSec: f.gauge("wkd_images_per_second", "Training throughput of this node, images per second."),
		members:      f.gauge("wkd_view_members", "Number of ranks in the current view."),
		generation:   f.gauge("wkd_view_generation", "Generation of the current view."),
		rank:         f.gauge("wkd_view_rank", "This node's rank in the current view; -1 when it holds none."),
		steps:        f.counter("wkd_steps_total", "Training steps completed by this node."),
	}
	m.rank.Set(-1)
	var dropped func() float64 = func() float64 { return 0 }
	if ship != nil {
		dropped = func() float64 { return float64(ship.Dropped()) }
	}
	f.register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wkd_log_lines_dropped_total",
		Help: "Log lines the NATS shipper dropped because NATS was slow or away.", ConstLabels: f.labels}, dropped))
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type factory struct {
	reg    *prometheus.Registry
	labels prometheus.Labels
}

func (f factory) register(c prometheus.Collector) prometheus.Collector {
	f.reg.MustRegister(c) // names are constants of this file: a clash is a programming error
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	return f.register(prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: f.labels})).(prometheus.Histogram)
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	return f.register(prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: f.labels})).(prometheus.Gauge)
}

func (f factory) counter(name, help string) prometheus.Counter {
	return f.register(prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: f.labels})).(prometheus.Counter)
}

// ObserveStep records one finished training step of d that processed images images.
func (m *Metrics) ObserveStep(d time.Duration, images int) {
	m.stepSeconds.Observe(d.Seconds())
	m.steps.Inc()
	if d > 0 {
		m.imagesPerSec.Set(float64(images) / d.Seconds())
	}
}

// ObserveAllReduce records one all-reduce of bytes payload bytes that took d.
func (m *Metrics) ObserveAllReduce(bytes int, d time.Duration) {
	m.allreduceSeconds.Observe(d.Seconds())
	m.allreduceBytes.Add(float64(bytes))
	if d > 0 {
		m.allreduceBW.Set(float64(bytes) / d.Seconds())
	}
}

// SetLoss records the latest value of the loss term name.
func (m *Metrics) SetLoss(name string, v float64) { m.losses.WithLabelValues(name).Set(v) }

// SetView records the current view's size, generation and this node's rank.
func (m *Metrics) SetView(v View) {
	m.members.Set(float64(v.Size()))
	m.generation.Set(float64(v.Generation))
	m.rank.Set(float64(v.Rank()))
}

// ViewEnded records that this node holds no current view (membership changed, waiting or
// spare): members 0, rank -1; the generation keeps its last value.
func (m *Metrics) ViewEnded() {
	m.members.Set(0)
	m.rank.Set(-1)
}

// ServeMetrics serves /metrics on addr ("127.0.0.1:0" picks a port) in the background. The
// returned server's Addr is the bound address; stop it with Close or Shutdown.
func (m *Metrics) ServeMetrics(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: metrics listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed after start; Prometheus will see the target down
		}
	}()
	return srv, nil
}
