package models

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"wkd/internal/safetensors"
)

// metaSpec is the metadata key Save records the network's spec under, for people reading the
// file; Load checks tensors by name and shape, not this.
const metaSpec = "wkd.spec"

// Save writes every state_dict tensor of m under its reference name, with meta, atomically
// (a crash leaves any previous file intact).
func Save(path string, m Module, meta map[string]string) error {
	tensors := make(map[string]safetensors.Tensor, len(m.State()))
	for _, t := range m.State() {
		tensors[t.Name] = safetensors.Tensor{Shape: t.Shape, Data: t.HostData()}
	}
	for _, t := range m.State() {
		// A failed device's downloads leave zeros: write no file that looks like weights.
		if d := t.Device(); d != nil && d.Err() != nil {
			return fmt.Errorf("%s not written: reading %q from %s: %w", path, t.Name, d.Name(), d.Err())
		}
	}
	all := map[string]string{metaSpec: m.Spec().String()}
	maps.Copy(all, meta)
	return safetensors.WriteFile(path, tensors, all)
}

// Load reads a file written by Save or converted from the reference's .pth (see the package
// doc) into m. Every tensor of m must be present with its shape and no others may be, except
// BatchNorm's num_batches_tracked counters, which are ignored. On any error m is unchanged.
func Load(path string, m Module) (meta map[string]string, err error) {
	tensors, meta, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	named := m.Named()
	for _, t := range m.State() {
		f, ok := tensors[t.Name]
		if !ok {
			return nil, fmt.Errorf("%s: %w: %q (shape %v) for %v", path, ErrMissing, t.Name, t.Shape, m.Spec())
		}
		if !slices.Equal(f.Shape, t.Shape) {
			return nil, fmt.Errorf("%s: %w: %q is %v in the file, %v in %v (another width or norm?)", path, ErrShape, t.Name, f.Shape, t.Shape, m.Spec())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		if _, ok := named[name]; !ok && !strings.HasSuffix(name, ".num_batches_tracked") {
			return nil, fmt.Errorf("%s: %w: %q is not in %v (another kind, norm or block count?)", path, ErrUnexpected, name, m.Spec())
		}
	}
	for _, t := range m.State() {
		t.CopyFromHost(tensors[t.Name].Data)
	}
	return meta, nil
}
