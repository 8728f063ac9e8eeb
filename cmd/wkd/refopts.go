package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"wkd/trainer"
)

// The options of pytorch-CycleGAN-and-pix2pix, so that a command line copied from its scripts
// runs: the names it spells differently map onto wkd's flags; a few are translated; the
// display and logging options it has for visdom and HTML pages are taken and ignored, with a
// note; options whose other values wkd does not implement accept only the reference's default.

// referenceAliases maps a reference option to the wkd flag that does the same.
var referenceAliases = map[string]string{
	"dataroot": "data", "batch_size": "batch-size", "n_epochs": "epochs", "n_epochs_decay": "epochs-decay",
	"lambda_L1": "lambda-l1", "lambda_A": "lambda-A", "lambda_B": "lambda-B", "lambda_identity": "lambda-identity",
	"max_dataset_size": "max-samples", "no_dropout": "no-dropout", "gan_mode": "gan-mode", "pool_size": "pool-size",
	"load_size": "load-size", "crop_size": "crop-size", "input_nc": "input-nc", "output_nc": "output-nc",
	"n_layers_D": "n-layers-D", "no_flip": "no-flip", "print_freq": "log-every", "save_latest_freq": "checkpoint-every",
	"continue_train": "resume",
}

// referenceIgnored are reference options about its display, HTML pages and loader processes,
// which change nothing in what is trained.
var referenceIgnored = []string{"display_id", "display_freq", "display_ncols", "display_server", "display_env",
	"display_port", "display_winsize", "update_html_freq", "no_html", "save_epoch_freq", "save_by_iter",
	"num_threads", "verbose", "suffix", "use_wandb", "wandb_project_name", "epoch_count"}

// referenceSwitches are the ignored options that take no value.
var referenceSwitches = map[string]bool{"no_html": true, "save_by_iter": true, "verbose": true, "use_wandb": true}

// referenceFixed are reference options of which wkd implements only the default value.
var referenceFixed = map[string]string{"lr_policy": "linear", "init_type": "normal", "init_gain": "0.02", "phase": "train"}

// refFlags are the reference options that need more than an alias.
type refFlags struct {
	name, checkpointsDir, datasetMode string
	ignored                           []string
}

// isReferenceName reports whether a flag of fs exists only as the reference's spelling.
func isReferenceName(name string) bool {
	_, alias := referenceAliases[name]
	_, fixed := referenceFixed[name]
	return alias || fixed || slices.Contains(referenceIgnored, name) ||
		name == "name" || name == "checkpoints_dir" || name == "dataset_mode" || name == "gpu_ids"
}

// bindReferenceFlags adds the reference's option names to a run's flag set, but for names the
// set already has (wkd node's --name is the node's).
func bindReferenceFlags(fs *pflag.FlagSet, f *runFlags, r *refFlags) {
	has := func(name string) bool { return fs.Lookup(name) != nil }
	own := map[string]bool{} // the set's flags before the reference's are added
	fs.VisitAll(func(fl *pflag.Flag) { own[fl.Name] = true })
	for _, alias := range slices.Sorted(maps.Keys(referenceAliases)) {
		if target := fs.Lookup(referenceAliases[alias]); target != nil && !has(alias) {
			fs.VarPF(aliasValue{target.Value}, alias, "", "the reference's name of --"+referenceAliases[alias]).NoOptDefVal = target.NoOptDefVal
		}
	}
	r.checkpointsDir = "checkpoints"
	if !has("name") {
		fs.StringVar(&r.name, "name", "", "the reference's run name: the run folder is --checkpoints_dir/NAME")
		fs.StringVar(&r.checkpointsDir, "checkpoints_dir", "checkpoints", "with --name: the folder of run folders")
	}
	fs.StringVar(&r.datasetMode, "dataset_mode", "", "aligned (pix2pix) or unaligned (cyclegan): follows --model, checked")
	fs.Var(funcFlag{typ: "ids", set: func(s string) error {
		switch {
		case s == "-1":
			f.cfg.Device = trainer.DeviceCPU
		case s == "0":
			f.cfg.Device = trainer.DeviceCUDA
		default:
			return fmt.Errorf("%q: wkd runs on one device per process; use -1 (CPU) or 0 (GPU 0), and --local-nodes or wkd node for several", s)
		}
		return nil
	}}, "gpu_ids", "the reference's devices: -1 is --device cpu, one GPU id is --device cuda")
	for _, name := range referenceIgnored {
		note := func(string) error {
			r.ignored = append(r.ignored, "--"+name)
			return nil
		}
		if referenceSwitches[name] {
			fs.BoolFunc(name, "the reference's display and logging switch: taken and ignored", note)
		} else {
			fs.Var(funcFlag{typ: "value", set: note}, name, "the reference's display and logging option: taken and ignored")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(referenceFixed)) {
		want := referenceFixed[name]
		fs.Var(funcFlag{typ: "value", set: func(s string) error {
			if s != want {
				return fmt.Errorf("%q: wkd implements only %s", s, want)
			}
			return nil
		}}, name, "the reference's option; only "+want+" is implemented")
	}
	// Help lists the reference's spellings apart (printReferenceNames), not beside wkd's.
	fs.VisitAll(func(fl *pflag.Flag) { fl.Hidden = fl.Hidden || !own[fl.Name] })
}

// applyReferenceFlags turns --name, --checkpoints_dir and --dataset_mode into wkd's settings.
func applyReferenceFlags(fs *pflag.FlagSet, f *runFlags, r *refFlags) error {
	if r.name != "" {
		outSet := false
		fs.Visit(func(fl *pflag.Flag) { outSet = outSet || fl.Name == "out" })
		if outSet {
			return fmt.Errorf("--name %s and --out: give one (--name puts the run in --checkpoints_dir/NAME)", r.name)
		}
		f.cfg.Dir = filepath.Join(r.checkpointsDir, r.name)
	}
	if r.datasetMode != "" {
		want := map[trainer.Task]string{trainer.Pix2Pix: "aligned", trainer.CycleGAN: "unaligned"}[f.cfg.Task]
		if r.datasetMode != want {
			return fmt.Errorf("--dataset_mode %s: --model %s reads %s datasets", r.datasetMode, f.cfg.Task, want)
		}
	}
	if len(r.ignored) > 0 {
		fmt.Fprintf(os.Stderr, "note: %s ignored (the reference's display and logging; wkd logs to log.jsonl)\n", strings.Join(slices.Compact(slices.Sorted(slices.Values(r.ignored))), ", "))
	}
	return nil
}

// printReferenceNames names the reference's spellings a run's flags accept, which its help
// leaves out of the list of flags.
func printReferenceNames(w io.Writer, fs *pflag.FlagSet) {
	var ref []string
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden && isReferenceName(fl.Name) {
			ref = append(ref, "--"+fl.Name)
		}
	})
	fmt.Fprintf(w, "\nThe options of pytorch-CycleGAN-and-pix2pix are accepted as it spells them:\n%s.\n", wrap(strings.Join(ref, ", "), 96, "  "))
}

// wrap breaks s at spaces into lines of at most width, each starting with indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}
