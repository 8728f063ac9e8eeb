package models

import (
	"fmt"
	"strings"

	"wkd/internal/torchref"
)

// torchNets is the reference's networks in PyTorch (see internal/torchref/nets.py).
var torchNets = torchref.Nets

// pyBuild is the Python expression that builds s with the classes of torchNets.
func pyBuild(s Spec) string {
	r := s.Resolved()
	b := func(v bool) string {
		if v {
			return "True"
		}
		return "False"
	}
	switch r.Kind {
	case ResNet9Blocks, ResNet6Blocks, ResNet:
		return fmt.Sprintf("ResGen(%d, %d, %d, %q, %s, %d)", r.InputNC, r.OutputNC, r.NGF, r.Norm.String(), b(r.Dropout), r.NBlocks)
	case UNet128, UNet256, UNet:
		return fmt.Sprintf("UGen(%d, %d, %d, %d, %q, %s)", r.InputNC, r.OutputNC, r.NumDowns, r.NGF, r.Norm.String(), b(r.Dropout))
	case PatchGAN, NLayers:
		return fmt.Sprintf("NLayerD(%d, %d, %d, %q)", r.InputNC, r.NDF, r.NLayers, r.Norm.String())
	case Pixel:
		return fmt.Sprintf("PixelD(%d, %d, %q)", r.InputNC, r.NDF, r.Norm.String())
	}
	panic("no python for " + r.Kind.String())
}

// caseKey makes a label safe as a tensor-name prefix.
func caseKey(label string) string { return strings.ReplaceAll(label, "/", "_") }
