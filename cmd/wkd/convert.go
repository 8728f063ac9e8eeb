package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/pflag"

	"wkd/internal/safetensors"
	"wkd/models"
)

func init() {
	register(command{name: "convert", summary: "convert weights between PyTorch .pth and safetensors, both ways, recording the architecture", group: groupMake,
		use: "--in FILE --out FILE [--netG KIND --ngf N --norm NORM ...]",
		long: "Converts a PyTorch state_dict (such as the reference's latest_net_G.pth) to safetensors, or back.\n" +
			"With --netG (or --netD) the tensors are checked against that network by name and shape and the\n" +
			"architecture is recorded in the safetensors file, so `wkd distill --teacher FILE` needs nothing else.",
		flags: convertFlags})
}

func convertFlags(fs *pflag.FlagSet, _ []string) func([]string) error {
	in := fs.String("in", "", "weights to read: a PyTorch state_dict (.pth, .pt; torch.save's zip or legacy format) or a .safetensors file")
	out := fs.String("out", "", "file to write: .safetensors from a .pth, .pth from a .safetensors")
	overwrite := fs.Bool("overwrite", false, "replace --out if it exists")
	var spec models.Spec
	fs.Var(&spec.Kind, "netG", "the generator the weights are for: "+models.GeneratorNames()+"; recorded in the file so --teacher needs no architecture flags")
	netD := fs.String("netD", "", "or the discriminator: basic|n_layers|pixel")
	fs.IntVar(&spec.NGF, "ngf", 64, "generator width")
	fs.IntVar(&spec.NDF, "ndf", 64, "discriminator width")
	spec.Norm = models.Instance
	fs.Var(&spec.Norm, "norm", "normalization: "+models.NormNames()+" (the reference's default instance; its pix2pix uses batch)")
	fs.IntVar(&spec.NBlocks, "n-blocks", 9, "residual blocks, with --netG resnet")
	fs.IntVar(&spec.NumDowns, "num-downs", 8, "downsamplings, with --netG unet")
	fs.IntVar(&spec.NLayers, "n-layers-D", 3, "layers, with --netD n_layers")
	noDropout := fs.Bool("no-dropout", false, "the generator has no dropout layers (the reference's --no_dropout; its CycleGAN default)")
	fs.IntVar(&spec.InputNC, "input-nc", 3, "input channels")
	fs.IntVar(&spec.OutputNC, "output-nc", 3, "output channels")
	return func(args []string) error {
		if *in == "" || *out == "" {
			return errors.New("--in and --out are required, such as --in latest_net_G.pth --out G.safetensors --netG unet_256 --norm batch")
		}
		spec.Dropout = !*noDropout
		if *netD != "" {
			if spec.Kind != 0 {
				return errors.New("--netG and --netD: give one, the network the weights are for")
			}
			if err := spec.Kind.Set(*netD); err != nil || spec.Kind.IsGenerator() {
				return fmt.Errorf("--netD %q: use basic, n_layers or pixel", *netD)
			}
		}
		if spec.Kind != 0 {
			spec = spec.Canonical()
			if err := spec.Validate(); err != nil {
				return fmt.Errorf("the network of --netG/--netD: %w", err)
			}
		}
		toPth := isPthName(*out)
		if !toPth && filepath.Ext(*out) != ".safetensors" {
			return fmt.Errorf("--out %s: name a .safetensors file (from a .pth) or a .pth file (from a .safetensors)", *out)
		}
		if abs(*in) == abs(*out) {
			return fmt.Errorf("--out %s is --in: write the conversion to another file", *out)
		}
		if _, err := os.Stat(*out); err == nil && !*overwrite {
			return fmt.Errorf("--out %s exists: pass --overwrite to replace it", *out)
		}

		var tensors map[string]safetensors.Tensor
		var recorded models.Spec
		var err error
		if inIsPth, perr := models.IsPthFile(*in); perr != nil {
			return fmt.Errorf("--in: %w", perr)
		} else if inIsPth {
			if toPth {
				return fmt.Errorf("--in %s is already a .pth: name a .safetensors --out", *in)
			}
			if tensors, err = models.ReadPth(*in); err != nil {
				return fmt.Errorf("--in: %w", err)
			}
		} else {
			if !toPth {
				return fmt.Errorf("--in %s is already safetensors: name a .pth --out", *in)
			}
			if tensors, _, err = safetensors.Read(*in); err != nil {
				return fmt.Errorf("--in %s: %w (want a .pth or .safetensors file)", *in, err)
			}
			var ok bool
			if recorded, ok, err = models.ArchOf(*in); err != nil {
				return fmt.Errorf("--in: %w", err)
			} else if ok && spec.Kind == 0 {
				spec = recorded
			}
		}

		names := slices.Sorted(maps.Keys(tensors))
		var m models.Module
		if spec.Kind != 0 {
			if m, err = models.Build(spec); err != nil {
				return err
			}
			if err := models.SetState(m, tensors, *in); err != nil {
				return fmt.Errorf("--in does not hold the network of --netG/--netD (%v): %w", spec, err)
			}
			names = names[:0]
			for _, t := range m.State() { // the reference's state_dict order
				names = append(names, t.Name)
			}
		}
		if toPth {
			if err := models.WritePth(*out, names, tensors); err != nil {
				return err
			}
		} else if m != nil {
			if err := models.Save(*out, m, map[string]string{"source": filepath.Base(*in)}); err != nil {
				return err
			}
		} else {
			if err := safetensors.WriteFile(*out, tensors, map[string]string{"source": filepath.Base(*in)}); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "wrote %d tensors to %s\n", len(names), *out)
		switch {
		case m != nil:
			fmt.Fprintf(os.Stderr, "network: %v\n", spec)
		case !toPth:
			fmt.Fprintln(os.Stderr, "no architecture recorded (no --netG or --netD): `wkd distill --teacher` will need --teacher-netG and its other flags")
		}
		return nil
	}
}

func isPthName(path string) bool {
	ext := filepath.Ext(path)
	return ext == ".pth" || ext == ".pt"
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
