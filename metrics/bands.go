package metrics

import (
	"fmt"

	"wkd/ops"
)

// Band names a Haar sub-band: level 1 is the finest; LL only at the last level.
type Band struct {
	Level int    `json:"level"`
	Name  string `json:"name"` // LH, HL, HH or LL
}

func (b Band) String() string { return fmt.Sprintf("%s%d", b.Name, b.Level) }

// BandEnergies is the mean squared coefficient of every band of a J-level Haar DWT over an
// image set: the high bands of each level (LH, HL, HH), then LL_J. Where generated images
// lack high-frequency detail, their high-band energies fall short of the real images'.
func BandEnergies(images []Image, levels int) ([]Band, []float64) {
	var bands []Band
	for j := 1; j <= levels; j++ {
		for _, n := range []string{"LH", "HL", "HH"} {
			bands = append(bands, Band{j, n})
		}
	}
	bands = append(bands, Band{levels, "LL"})
	energy := make([]float64, len(bands))
	for _, im := range images {
		x := ops.FromData(im.Pix, 1, im.C, im.H, im.W)
		ll, highs := ops.HaarDWT(nil, x, levels)
		for j, h := range highs {
			// h: (1, C, 3, Hj, Wj)
			per := len(h.Data) / (3 * im.C)
			for c := range im.C {
				for k := range 3 {
					seg := h.Data[(c*3+k)*per : (c*3+k+1)*per]
					energy[3*j+k] += meanSquare(seg) / float64(im.C)
				}
			}
		}
		energy[len(energy)-1] += meanSquare(ll.Data)
	}
	for i := range energy {
		energy[i] /= float64(len(images))
	}
	return bands, energy
}

func meanSquare(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s / float64(len(v))
}
