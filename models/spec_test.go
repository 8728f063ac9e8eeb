package models

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func errorsIsSpec(err error) bool { return errors.Is(err, ErrSpec) }

func TestKindNamesRoundTrip(t *testing.T) {
	for _, k := range Kinds() {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", k.String(), got, err, k)
		}
		if !strings.Contains(KindNames(), k.String()) {
			t.Errorf("KindNames() %q lacks %q", KindNames(), k)
		}
	}
	if g, d := GeneratorNames(), DiscriminatorNames(); g != "resnet_9blocks|resnet_6blocks|resnet|unet_128|unet_256|unet" || d != "basic|n_layers|pixel" {
		t.Errorf("generators %q, discriminators %q", g, d)
	}
	if k, err := ParseKind(" PatchGAN "); err != nil || k != PatchGAN {
		t.Errorf("alias patchgan: %v, %v", k, err)
	}
	_, err := ParseKind("resnet_12blocks")
	if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "resnet_9blocks|") || !strings.Contains(err.Error(), "resnet_12blocks") {
		t.Errorf("unknown kind: error %v should wrap ErrSpec, name the value and list the allowed ones", err)
	}
	for _, n := range []Norm{Instance, Batch, NoNorm} {
		got, err := ParseNorm(n.String())
		if err != nil || got != n {
			t.Errorf("ParseNorm(%q) = %v, %v", n.String(), got, err)
		}
	}
	if _, err := ParseNorm("group"); !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "instance|batch|none") {
		t.Errorf("unknown norm: %v", err)
	}
}

func TestKindAndNormAreFlags(t *testing.T) {
	var k Kind
	var n Norm
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&k, "netG", "generator: "+KindNames())
	fs.Var(&n, "norm", "norm: "+NormNames())
	if err := fs.Parse([]string{"-netG", "unet_256", "-norm", "batch"}); err != nil {
		t.Fatal(err)
	}
	if k != UNet256 || n != Batch {
		t.Errorf("parsed %v %v", k, n)
	}
	if err := fs.Parse([]string{"-netG", "vgg"}); err == nil || !strings.Contains(err.Error(), "netG") {
		t.Errorf("bad flag value: %v, want an error naming the flag", err)
	}
}

func TestValidate(t *testing.T) {
	good := []Spec{
		{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 64, Norm: Instance},
		{Kind: ResNet, NBlocks: 0, InputNC: 3, OutputNC: 3, NGF: 4, Norm: NoNorm},
		{Kind: UNet, NumDowns: 5, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch},
		{Kind: PatchGAN, InputNC: 6, NDF: 64, Norm: Batch},
		{Kind: Pixel, InputNC: 3, NDF: 64, Norm: Instance},
	}
	for _, s := range good {
		if err := s.Validate(); err != nil {
			t.Errorf("%v: %v", s, err)
		}
	}
	bad := map[string]Spec{
		"no kind":        {InputNC: 3, OutputNC: 3, NGF: 64, Norm: Instance},
		"no norm":        {Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 64},
		"no input":       {Kind: ResNet9Blocks, OutputNC: 3, NGF: 64, Norm: Instance},
		"no output":      {Kind: UNet256, InputNC: 3, NGF: 64, Norm: Batch},
		"no ngf":         {Kind: UNet256, InputNC: 3, OutputNC: 3, NDF: 64, Norm: Batch},
		"no ndf":         {Kind: PatchGAN, InputNC: 3, NGF: 64, Norm: Batch},
		"unet 4 downs":   {Kind: UNet, NumDowns: 4, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch},
		"n_layers 0":     {Kind: NLayers, InputNC: 3, NDF: 8, Norm: Batch},
		"negative block": {Kind: ResNet, NBlocks: -1, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Batch},
	}
	for name, s := range bad {
		err := s.Validate()
		if !errors.Is(err, ErrSpec) {
			t.Errorf("%s: Validate() = %v, want ErrSpec", name, err)
		}
		if _, berr := Build(s); !errors.Is(berr, ErrSpec) {
			t.Errorf("%s: Build error %v, want ErrSpec", name, berr)
		}
	}
	// Fixed kinds ignore the generic sizes.
	s := Spec{Kind: ResNet6Blocks, NBlocks: 2, InputNC: 3, OutputNC: 3, NGF: 8, Norm: Instance}.Resolved()
	if s.NBlocks != 6 {
		t.Errorf("resnet_6blocks resolved to %d blocks", s.NBlocks)
	}
}

func TestSpecJSON(t *testing.T) {
	s := Spec{Kind: UNet256, InputNC: 3, OutputNC: 3, NGF: 64, Norm: Batch, Dropout: true}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Kind":"unet_256"`) || !strings.Contains(string(b), `"Norm":"batch"`) {
		t.Errorf("JSON %s should name kind and norm", b)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"Kind":"vgg"}`), &back); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown kind in JSON: %v", err)
	}
}

// TestCountProducts: a transposed convolution does C*K*KH*KW products per input position,
// thop's count (per output position) being s^2 = 4 times that at stride 2; convolutions count
// the same both ways.
func TestCountProducts(t *testing.T) {
	r9 := Spec{Kind: ResNet9Blocks, InputNC: 3, OutputNC: 3, NGF: 64, Norm: Instance}
	macs, err1 := CountMACs(r9, 256, 256)
	products, err2 := CountProducts(r9, 256, 256)
	// The two upsamplings: 256 -> 128 channels from 64x64, 128 -> 64 from 128x128, 3x3.
	up := int64(256*128*9*64*64 + 128*64*9*128*128)
	if err1 != nil || err2 != nil || macs-products != 3*up {
		t.Errorf("ResNet-9: MACs %d, products %d (%v, %v); want a difference of 3 x %d", macs, products, err1, err2, up)
	}
	d := Spec{Kind: PatchGAN, InputNC: 6, NDF: 64, Norm: Batch}
	if m, _ := CountMACs(d, 256, 256); m == 0 {
		t.Fatal("no MACs for the PatchGAN")
	} else if p, _ := CountProducts(d, 256, 256); p != m {
		t.Errorf("PatchGAN (no transposed convolutions): products %d, MACs %d", p, m)
	}
}
