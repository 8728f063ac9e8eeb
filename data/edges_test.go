package data

import "testing"

// A dark square on white gives one thin closed outline: black on the square's border, white
// inside and far outside, no line thicker than two pixels.
func TestEdgeMapOutlinesSquare(t *testing.T) {
	const w, h = 32, 32
	img := make([]uint8, w*h)
	for i := range img {
		img[i] = 255
	}
	for y := 8; y < 24; y++ {
		for x := 8; x < 24; x++ {
			img[y*w+x] = 20
		}
	}
	e := EdgeMap(img, w, h, DefaultEdgeParams())
	black := func(x, y int) bool { return e[y*w+x] == 0 }
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			inside := x >= 11 && x < 21 && y >= 11 && y < 21
			far := x < 5 || x >= 27 || y < 5 || y >= 27
			if (inside || far) && black(x, y) {
				t.Fatalf("edge at (%d,%d), away from the square's border", x, y)
			}
			if e[y*w+x] != 0 && e[y*w+x] != 255 {
				t.Fatalf("value %d at (%d,%d): an edge map is black on white", e[y*w+x], x, y)
			}
		}
	}
	// each side of the square crosses the outline once, one or two pixels thick
	for _, c := range []struct{ y, x0, x1 int }{{16, 0, 16}, {16, 16, 32}} {
		run, runs := 0, 0
		for x := c.x0; x < c.x1; x++ {
			if black(x, c.y) {
				run++
				if run == 1 {
					runs++
				}
			} else {
				if run > 2 {
					t.Fatalf("row %d: line %d pixels thick", c.y, run)
				}
				run = 0
			}
		}
		if runs != 1 {
			t.Fatalf("row %d, x %d..%d: %d edge crossings, want 1", c.y, c.x0, c.x1, runs)
		}
	}
}

func TestEdgeMapFlatImageHasNoEdges(t *testing.T) {
	img := make([]uint8, 16*16)
	for i := range img {
		img[i] = 200
	}
	for i, v := range EdgeMap(img, 16, 16, DefaultEdgeParams()) {
		if v != 255 {
			t.Fatalf("edge at %d in a flat image", i)
		}
	}
}
