package torchref

import "testing"

func TestRunRoundTrip(t *testing.T) {
	out := Run(t, "O['y'] = I['x'] * 2 + 1\nO['s'] = I['x'].sum()", map[string]Array{
		"x": Of([]float32{1, 2, 3, 4, 5, 6}, 2, 3),
	})
	y := out["y"]
	if len(y.Shape) != 2 || y.Shape[0] != 2 || y.Shape[1] != 3 {
		t.Fatalf("shape %v, want [2 3]", y.Shape)
	}
	want := []float32{3, 5, 7, 9, 11, 13}
	if e := RelErr(y.Data, want); e != 0 {
		t.Errorf("y = %v, want %v", y.Data, want)
	}
	if out["s"].Data[0] != 21 {
		t.Errorf("sum = %v, want 21", out["s"].Data[0])
	}
}

func TestRelErr(t *testing.T) {
	if e := RelErr([]float32{1, 2}, []float32{1, 2.5}); e != 0.2 {
		t.Errorf("RelErr = %v, want 0.2", e)
	}
}
