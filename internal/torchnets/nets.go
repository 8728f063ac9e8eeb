// Package torchnets holds the reference's networks written in PyTorch, with state_dict keys
// identical to package models', for parity tests and for the PyTorch side of bench-engine.
package torchnets

import _ "embed"

// Nets is Python that defines ResGen, UGen, NLayerD and PixelD (with make_norm). A script
// starts with it, then builds its networks and loads their weights by name.
//
//go:embed nets.py
var Nets string

// InceptionPy is Python that defines fid_inception() (Inception-v3 as FID uses it, built from
// torchvision's Inception3), randomize(net, seed) and fid_features(net, x, dims), for the
// Inception parity tests and the PyTorch side of bench-inception.
//
//go:embed inception.py
var InceptionPy string
