package torchref

import _ "embed"

// Nets is Python that defines the reference's networks in PyTorch (ResGen, UGen, NLayerD,
// PixelD, with make_norm), state_dict keys identical to the models package's. A test script
// starts with it, then builds its networks and loads their weights by name.
//
//go:embed nets.py
var Nets string
