package trainer

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressWidth bounds the bar's line to fit an 80-column terminal.
const progressWidth = 79

// progress draws a one-line bar: steps, epoch, the first losses, images/s and time left. Log
// lines written through around share the terminal with it without mixing into it.
type progress struct {
	mu        sync.Mutex
	line      string // the bar as last drawn; "" when none is on screen
	w         io.Writer
	total     int64
	first     int64
	started   time.Time
	lastDrawn time.Time
	imgPerSec float64
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) start(total, done int64) {
	p.total, p.first, p.started = total, done, time.Now()
}

func (p *progress) update(r StepReport) {
	if ips := float64(r.Images) / r.Duration.Seconds(); p.imgPerSec == 0 {
		p.imgPerSec = ips
	} else {
		p.imgPerSec = 0.9*p.imgPerSec + 0.1*ips
	}
	now := time.Now()
	if now.Sub(p.lastDrawn) < 200*time.Millisecond && r.Step != p.total {
		return
	}
	p.lastDrawn = now
	const width = 24
	frac := float64(r.Step) / float64(max(p.total, 1))
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	eta := "?"
	if done := r.Step - p.first; done > 0 {
		left := time.Duration(float64(now.Sub(p.started)) / float64(done) * float64(p.total-r.Step))
		eta = left.Round(time.Second).String()
	}
	// The losses that fit: a wrapped line could not be cleared and drawn over.
	head := fmt.Sprintf("[%s] %d/%d ep %d", bar, r.Step, p.total, r.Epoch+1)
	tail := fmt.Sprintf(" | %.1f img/s | ETA %s", p.imgPerSec, eta)
	for _, l := range r.Losses {
		next := fmt.Sprintf(" %s %.3f", l.Name, l.Value)
		if len(head)+len(next)+len(tail) > progressWidth {
			break
		}
		head += next
	}
	line := head + tail
	if len(line) > progressWidth {
		line = line[:progressWidth]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = "\r" + line + "\033[K"
	io.WriteString(p.w, p.line)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line != "" {
		fmt.Fprintln(p.w)
		p.line = ""
	}
}

// count returns a progress line for work before training, "label done/total", drawn at most
// every 100 ms and ended at total.
func (p *progress) count(label string) func(done, total int) {
	var last time.Time
	return func(done, total int) {
		if done < total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(p.w, "\r%s %d/%d\033[K", label, done, total)
		if done == total {
			fmt.Fprintln(p.w)
		}
	}
}

// around returns a writer for log lines on the bar's terminal: each write first clears the
// bar's line, and the bar is drawn again below the lines written.
func (p *progress) around(w io.Writer) io.Writer { return progressLog{p, w} }

type progressLog struct {
	p *progress
	w io.Writer
}

func (l progressLog) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	if l.p.line != "" {
		io.WriteString(l.p.w, "\r\033[K")
	}
	n, err := l.w.Write(b)
	if l.p.line != "" {
		io.WriteString(l.p.w, l.p.line)
	}
	return n, err
}
