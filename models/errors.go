package models

import "errors"

// Errors returned by Validate, Build, CountMACs, Save and Load. Wrapped with %w; test with errors.Is.
var (
	// ErrSpec: a Spec names an unknown kind or norm, or a size that cannot build a network.
	ErrSpec = errors.New("models: invalid spec")
	// ErrMissing: a weights file lacks a tensor the network has.
	ErrMissing = errors.New("models: tensor missing from weights file")
	// ErrUnexpected: a weights file holds a tensor the network does not have.
	ErrUnexpected = errors.New("models: unexpected tensor in weights file")
	// ErrShape: a tensor in a weights file has another shape than the network's.
	ErrShape = errors.New("models: tensor shape mismatch")
)
