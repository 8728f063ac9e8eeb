package trainer

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line bar: steps, epoch, the first losses, images/s and time left.
type progress struct {
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
	var losses strings.Builder
	for i, l := range r.Losses {
		if i == 4 {
			break
		}
		fmt.Fprintf(&losses, " %s %.3f", l.Name, l.Value)
	}
	fmt.Fprintf(p.w, "\r[%s] %d/%d ep %d%s | %.1f img/s | ETA %s   ", bar, r.Step, p.total, r.Epoch+1, losses.String(), p.imgPerSec, eta)
}

func (p *progress) finish() { fmt.Fprintln(p.w) }
