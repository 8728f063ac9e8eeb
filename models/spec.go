package models

import (
	"fmt"
	"strings"
)

// Kind is a network architecture, named as the reference's --netG / --netD flags name it.
type Kind int

// The kinds. Generators first, then discriminators.
const (
	// ResNet9Blocks is the CycleGAN generator: 9 residual blocks (256x256 images).
	ResNet9Blocks Kind = iota + 1
	// ResNet6Blocks is the 6-block ResNet generator (128x128 images in the paper).
	ResNet6Blocks
	// ResNet is a ResNet generator with Spec.NBlocks residual blocks.
	ResNet
	// UNet128 is the U-Net generator with 7 downsamplings (128x128 images).
	UNet128
	// UNet256 is the pix2pix U-Net generator with 8 downsamplings (256x256 images).
	UNet256
	// UNet is a U-Net generator with Spec.NumDowns downsamplings.
	UNet
	// PatchGAN is the 70x70 PatchGAN discriminator: NLayerDiscriminator with 3 layers
	// (the reference's --netD basic).
	PatchGAN
	// NLayers is NLayerDiscriminator with Spec.NLayers layers (--netD n_layers).
	NLayers
	// Pixel is the 1x1 PixelGAN discriminator (--netD pixel).
	Pixel
)

var kindNames = map[Kind]string{
	ResNet9Blocks: "resnet_9blocks",
	ResNet6Blocks: "resnet_6blocks",
	ResNet:        "resnet",
	UNet128:       "unet_128",
	UNet256:       "unet_256",
	UNet:          "unet",
	PatchGAN:      "basic",
	NLayers:       "n_layers",
	Pixel:         "pixel",
}

// kindAliases are further spellings ParseKind accepts.
var kindAliases = map[string]Kind{"patchgan": PatchGAN}

// Kinds lists every kind in declaration order.
func Kinds() []Kind {
	return []Kind{ResNet9Blocks, ResNet6Blocks, ResNet, UNet128, UNet256, UNet, PatchGAN, NLayers, Pixel}
}

// KindNames lists the allowed flag values, "a|b|c", for help text.
func KindNames() string { return names(func(Kind) bool { return true }) }

// GeneratorNames lists the generator kinds, for a --netG flag's help.
func GeneratorNames() string { return names(Kind.IsGenerator) }

// DiscriminatorNames lists the discriminator kinds, for a --netD flag's help.
func DiscriminatorNames() string {
	return names(func(k Kind) bool { return !k.IsGenerator() })
}

func names(keep func(Kind) bool) string {
	var s []string
	for _, k := range Kinds() {
		if keep(k) {
			s = append(s, k.String())
		}
	}
	return strings.Join(s, "|")
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind reads a kind from its flag name (case-insensitive; "patchgan" means basic).
func ParseKind(s string) (Kind, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	for k, n := range kindNames {
		if n == l {
			return k, nil
		}
	}
	if k, ok := kindAliases[l]; ok {
		return k, nil
	}
	return 0, fmt.Errorf("%w: unknown network kind %q; use one of %s", ErrSpec, s, KindNames())
}

// Type names the flag's value in help (pflag.Value).
func (k *Kind) Type() string { return "name" }

// Set makes *Kind a flag.Value.
func (k *Kind) Set(s string) error {
	v, err := ParseKind(s)
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// IsGenerator reports whether the kind maps images to images (as opposed to scoring them).
func (k Kind) IsGenerator() bool { return k >= ResNet9Blocks && k <= UNet }

// Norm is the normalization layer, as the reference's --norm flag names it.
type Norm int

// The norms.
const (
	// Instance is InstanceNorm2d without affine parameters or running statistics (CycleGAN).
	Instance Norm = iota + 1
	// Batch is BatchNorm2d with affine parameters and running statistics (pix2pix).
	Batch
	// NoNorm is the identity. As in the reference, convolutions then carry no bias
	// where a norm would have followed them.
	NoNorm
)

var normNames = map[Norm]string{Instance: "instance", Batch: "batch", NoNorm: "none"}

// NormNames lists the allowed flag values for help text.
func NormNames() string { return "instance|batch|none" }

func (n Norm) String() string {
	if s, ok := normNames[n]; ok {
		return s
	}
	return fmt.Sprintf("Norm(%d)", int(n))
}

// ParseNorm reads a norm from its flag name.
func ParseNorm(s string) (Norm, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	for k, n := range normNames {
		if n == l {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown norm %q; use one of %s", ErrSpec, s, NormNames())
}

// Type names the flag's value in help (pflag.Value).
func (n *Norm) Type() string { return "name" }

// Set makes *Norm a flag.Value.
func (n *Norm) Set(s string) error {
	v, err := ParseNorm(s)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Spec says which network to build. Fields a kind does not use are ignored.
type Spec struct {
	Kind Kind
	// InputNC is the number of input channels (3 for RGB; a pix2pix discriminator sees
	// input and output side by side, so 6).
	InputNC int
	// OutputNC is a generator's number of output channels.
	OutputNC int
	// NGF is a generator's width: the channels of its first layer (64 in the reference;
	// WKD's students use 16 or so). Cost grows with its square.
	NGF int
	// NDF is a discriminator's width (64 in the reference).
	NDF int
	// Norm is the normalization: instance for CycleGAN, batch for pix2pix.
	Norm Norm
	// Dropout adds Dropout(0.5) in ResNet blocks, or in a U-Net's innermost ngf*8 blocks.
	// The reference turns it on for pix2pix and off for CycleGAN.
	Dropout bool
	// NBlocks is the number of residual blocks of kind ResNet (fixed by the other ResNet kinds).
	NBlocks int
	// NumDowns is the number of downsamplings of kind UNet (at least 5; fixed by the other
	// U-Net kinds). Input sides must be multiples of 2^NumDowns.
	NumDowns int
	// NLayers is the number of stride-2 convolutions of kind NLayers (3 for PatchGAN).
	NLayers int
}

// Resolved returns the spec with the sizes its kind fixes filled in.
func (s Spec) Resolved() Spec {
	switch s.Kind {
	case ResNet9Blocks:
		s.NBlocks = 9
	case ResNet6Blocks:
		s.NBlocks = 6
	case UNet128:
		s.NumDowns = 7
	case UNet256:
		s.NumDowns = 8
	case PatchGAN:
		s.NLayers = 3
	}
	return s
}

// Canonical returns the spec resolved, with the fields its kind does not use cleared, so
// that two specs of the same network compare equal however they were written.
func (s Spec) Canonical() Spec {
	r := s.Resolved()
	if r.Kind.IsGenerator() {
		r.NDF, r.NLayers = 0, 0
		if r.Kind != ResNet && r.Kind != ResNet9Blocks && r.Kind != ResNet6Blocks {
			r.NBlocks = 0
		}
		if r.Kind != UNet && r.Kind != UNet128 && r.Kind != UNet256 {
			r.NumDowns = 0
		}
		return r
	}
	r.NGF, r.OutputNC, r.Dropout, r.NBlocks, r.NumDowns = 0, 0, false, 0, 0
	if r.Kind != NLayers && r.Kind != PatchGAN {
		r.NLayers = 0
	}
	return r
}

// MaxWidth bounds channel counts (ngf, ndf, input and output channels).
const MaxWidth = 4096

// Validate says what is wrong with the spec, if anything.
func (s Spec) Validate() error {
	r := s.Resolved()
	if _, ok := kindNames[r.Kind]; !ok {
		return fmt.Errorf("%w: kind %v: use one of %s", ErrSpec, r.Kind, KindNames())
	}
	if _, ok := normNames[r.Norm]; !ok {
		return fmt.Errorf("%w: norm %v: use one of %s", ErrSpec, r.Norm, NormNames())
	}
	if r.InputNC < 1 {
		return fmt.Errorf("%w: %v: input channels %d, want at least 1", ErrSpec, r.Kind, r.InputNC)
	}
	if r.Kind.IsGenerator() {
		if r.OutputNC < 1 {
			return fmt.Errorf("%w: %v: output channels %d, want at least 1", ErrSpec, r.Kind, r.OutputNC)
		}
		if r.NGF < 1 {
			return fmt.Errorf("%w: %v: ngf %d, want at least 1", ErrSpec, r.Kind, r.NGF)
		}
	} else if r.NDF < 1 {
		return fmt.Errorf("%w: %v: ndf %d, want at least 1", ErrSpec, r.Kind, r.NDF)
	}
	// Bounds far beyond any GAN, so that sizes stay exact in int and nothing tries to
	// allocate what no machine has; ParamCount bounds the total.
	for _, f := range []struct {
		name string
		v    int
	}{{"input channels", r.InputNC}, {"output channels", r.OutputNC}, {"ngf", r.NGF}, {"ndf", r.NDF}} {
		if f.v > MaxWidth {
			return fmt.Errorf("%w: %v: %s %d, want at most %d", ErrSpec, r.Kind, f.name, f.v, MaxWidth)
		}
	}
	switch r.Kind {
	case ResNet:
		if r.NBlocks > 1000 {
			return fmt.Errorf("%w: resnet: %d blocks, want at most 1000", ErrSpec, r.NBlocks)
		}
		if r.NBlocks < 0 {
			return fmt.Errorf("%w: resnet: %d blocks, want 0 or more", ErrSpec, r.NBlocks)
		}
	case UNet:
		if r.NumDowns > 16 {
			return fmt.Errorf("%w: unet: %d downsamplings, want at most 16 (sides of 65536)", ErrSpec, r.NumDowns)
		}
		if r.NumDowns < 5 {
			return fmt.Errorf("%w: unet: %d downsamplings, want at least 5", ErrSpec, r.NumDowns)
		}
	case NLayers:
		if r.NLayers > 16 {
			return fmt.Errorf("%w: n_layers: %d layers, want at most 16", ErrSpec, r.NLayers)
		}
		if r.NLayers < 1 {
			return fmt.Errorf("%w: n_layers: %d layers, want at least 1", ErrSpec, r.NLayers)
		}
	}
	return nil
}

func (s Spec) String() string {
	r := s.Resolved()
	switch {
	case r.Kind == ResNet:
		return fmt.Sprintf("resnet(%d blocks) %d->%d ngf %d norm %v dropout %v", r.NBlocks, r.InputNC, r.OutputNC, r.NGF, r.Norm, r.Dropout)
	case r.Kind == UNet:
		return fmt.Sprintf("unet(%d downs) %d->%d ngf %d norm %v dropout %v", r.NumDowns, r.InputNC, r.OutputNC, r.NGF, r.Norm, r.Dropout)
	case r.Kind.IsGenerator():
		return fmt.Sprintf("%v %d->%d ngf %d norm %v dropout %v", r.Kind, r.InputNC, r.OutputNC, r.NGF, r.Norm, r.Dropout)
	case r.Kind == NLayers:
		return fmt.Sprintf("n_layers(%d) in %d ndf %d norm %v", r.NLayers, r.InputNC, r.NDF, r.Norm)
	default:
		return fmt.Sprintf("%v in %d ndf %d norm %v", r.Kind, r.InputNC, r.NDF, r.Norm)
	}
}

// MarshalText writes the flag name, so saved configurations read "resnet_9blocks".
func (k Kind) MarshalText() ([]byte, error) {
	if _, ok := kindNames[k]; !ok {
		return nil, fmt.Errorf("%w: kind %d has no name", ErrSpec, int(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText reads a flag name.
func (k *Kind) UnmarshalText(b []byte) error { return k.Set(string(b)) }

// MarshalText writes the flag name ("instance").
func (n Norm) MarshalText() ([]byte, error) {
	if _, ok := normNames[n]; !ok {
		return nil, fmt.Errorf("%w: norm %d has no name", ErrSpec, int(n))
	}
	return []byte(n.String()), nil
}

// UnmarshalText reads a flag name.
func (n *Norm) UnmarshalText(b []byte) error { return n.Set(string(b)) }

// SpecJSON is a Spec by its flag names, as run configurations and weights files record it.
type SpecJSON struct {
	Kind     string `json:"kind"`
	InputNC  int    `json:"input_nc"`
	OutputNC int    `json:"output_nc,omitempty"`
	NGF      int    `json:"ngf,omitempty"`
	NDF      int    `json:"ndf,omitempty"`
	Norm     string `json:"norm"`
	Dropout  bool   `json:"dropout"`
	NBlocks  int    `json:"n_blocks,omitempty"`
	NumDowns int    `json:"num_downs,omitempty"`
	NLayers  int    `json:"n_layers,omitempty"`
}

// ToSpecJSON is s by its flag names; nil for the zero Spec.
func ToSpecJSON(s Spec) *SpecJSON {
	if s.Kind == 0 {
		return nil
	}
	return &SpecJSON{Kind: s.Kind.String(), InputNC: s.InputNC, OutputNC: s.OutputNC, NGF: s.NGF, NDF: s.NDF,
		Norm: s.Norm.String(), Dropout: s.Dropout, NBlocks: s.NBlocks, NumDowns: s.NumDowns, NLayers: s.NLayers}
}

// Spec is the Spec j names; the zero Spec for nil.
func (j *SpecJSON) Spec() (Spec, error) {
	if j == nil {
		return Spec{}, nil
	}
	k, err := ParseKind(j.Kind)
	if err != nil {
		return Spec{}, err
	}
	n, err := ParseNorm(j.Norm)
	if err != nil {
		return Spec{}, err
	}
	return Spec{Kind: k, InputNC: j.InputNC, OutputNC: j.OutputNC, NGF: j.NGF, NDF: j.NDF, Norm: n,
		Dropout: j.Dropout, NBlocks: j.NBlocks, NumDowns: j.NumDowns, NLayers: j.NLayers}, nil
}
