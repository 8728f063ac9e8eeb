package trainer

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// screen plays what a terminal shows for text with carriage returns, erase-to-end-of-line
// (ESC [K) and newlines.
func screen(text string) []string {
	lines := []string{""}
	col := 0
	for i := 0; i < len(text); i++ {
		cur := &lines[len(lines)-1]
		switch {
		case text[i] == '\r':
			col = 0
		case text[i] == '\n':
			lines, col = append(lines, ""), 0
		case strings.HasPrefix(text[i:], "\033[K"):
			*cur = (*cur)[:col]
			i += 2
		default:
			if col < len(*cur) {
				*cur = (*cur)[:col] + text[i:i+1] + (*cur)[col+1:]
			} else {
				*cur += text[i : i+1]
			}
			col++
		}
	}
	return lines
}

// TestProgressAndLogLinesDoNotMix: a log line written while the bar is drawn ends up on a line
// of its own, and the bar is drawn again below it.
func TestProgressAndLogLinesDoNotMix(t *testing.T) {
	var term bytes.Buffer
	p := newProgress(&term)
	p.start(10, 0)
	step := func(n int64) {
		p.update(StepReport{Step: n, Images: 1, Duration: time.Millisecond, Losses: []Loss{{Name: "G_GAN", Value: 0.5}}})
	}
	step(1)
	log := p.around(&term)
	fmt.Fprint(log, "INF step=1 G_GAN=0.5\n")
	fmt.Fprint(log, "INF checkpoint written\n")
	if got := screen(term.String()); len(got) != 3 || !strings.HasPrefix(got[2], "[==") || !strings.Contains(got[2], " 1/10 ") {
		t.Errorf("after two log lines the terminal shows:\n%s\nwant the bar drawn again below them", strings.Join(got, "\n"))
	}
	step(10)
	p.finish()
	got := screen(term.String())
	if len(got) != 4 || got[0] != "INF step=1 G_GAN=0.5" || got[1] != "INF checkpoint written" ||
		!strings.HasPrefix(got[2], "[========================] 10/10 ep 1 G_GAN 0.500") || got[3] != "" {
		t.Errorf("the terminal shows:\n%s\nwant the two log lines, then the finished bar", strings.Join(got, "\n"))
	}
	// A bar never outgrows 80 columns (a wrapped one could not be cleared), and a shorter bar
	// leaves nothing of a longer one behind.
	term.Reset()
	p = newProgress(&term)
	p.start(10, 0)
	many := []Loss{{"G_GAN", 1}, {"G_L1", 12345.678}, {"D_real", 0.5}, {"D_fake", 0.5}, {"KD", 100}}
	p.update(StepReport{Step: 1, Images: 1, Duration: time.Millisecond, Losses: many})
	if got := screen(term.String()); len(got[0]) > 79 || !strings.Contains(got[0], "G_GAN 1.000 |") || !strings.Contains(got[0], "ETA") {
		t.Errorf("a bar with many losses: %q; want the losses that fit, then speed and ETA", got[0])
	}
	time.Sleep(210 * time.Millisecond) // the bar redraws at most every 200 ms
	p.update(StepReport{Step: 2, Images: 1, Duration: time.Millisecond})
	got = screen(term.String())
	if len(got) != 1 || len(got[0]) > 79 || strings.Contains(got[0], "G_") {
		t.Errorf("a long bar, then a short one: the terminal shows %q", got)
	}
	// Without a bar on screen, log lines pass through untouched, and finish adds nothing.
	var plain bytes.Buffer
	q := newProgress(&plain)
	fmt.Fprint(q.around(&plain), "line\n")
	q.finish()
	if plain.String() != "line\n" {
		t.Errorf("with no bar drawn: %q", plain.String())
	}
}
