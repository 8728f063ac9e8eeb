package torchref

import "wkd/internal/torchnets"

// Nets is torchnets.Nets: the reference's networks in PyTorch, for test scripts.
var Nets = torchnets.Nets
