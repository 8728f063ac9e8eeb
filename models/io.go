package models

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"wkd/internal/safetensors"
)

// metaSpec is the metadata key Save records the network's spec under, for people reading the
// file; Load checks tensors by name and shape, not this. MetaArch holds the same spec as JSON
// (SpecJSON), for programs: a weights file then says what to build.
const (
	metaSpec = "wkd.spec"
	MetaArch = "wkd.arch"
)

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
	arch, err := json.Marshal(ToSpecJSON(m.Spec()))
	if err != nil {
		return err
	}
	all := map[string]string{metaSpec: m.Spec().String(), MetaArch: string(arch)}
	maps.Copy(all, meta)
	return safetensors.WriteFile(path, tensors, all)
}

// ArchOf is the architecture a weights file records (Save and wkd convert write it); ok is
// false for a file without one, such as one converted by other tools.
func ArchOf(path string) (spec Spec, ok bool, err error) {
	if isPth, err := IsPthFile(path); err != nil || isPth {
		return Spec{}, false, err // a .pth records no architecture
	}
	_, meta, err := safetensors.Read(path)
	if err != nil {
		return Spec{}, false, err
	}
	raw, found := meta[MetaArch]
	if !found {
		return Spec{}, false, nil
	}
	var j SpecJSON
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		return Spec{}, false, fmt.Errorf("%s: %w: metadata %s: %v", path, ErrSpec, MetaArch, err)
	}
	if spec, err = j.Spec(); err != nil {
		return Spec{}, false, fmt.Errorf("%s: metadata %s: %w", path, MetaArch, err)
	}
	if err := spec.Validate(); err != nil {
		return Spec{}, false, fmt.Errorf("%s: metadata %s: %w", path, MetaArch, err)
	}
	return spec, true, nil
}

// Load reads a file written by Save, or a PyTorch state_dict (.pth, as the reference saves its
// checkpoints), into m, through SetState. On any error m is unchanged.
func Load(path string, m Module) (meta map[string]string, err error) {
	tensors, meta, err := ReadWeights(path)
	if err != nil {
		return nil, err
	}
	if err := SetState(m, tensors, path); err != nil {
		return nil, err
	}
	return meta, nil
}

// ReadWeights reads the tensors of a safetensors file (with its metadata) or of a torch.save'd
// state_dict (no metadata), telling them apart by their first bytes.
func ReadWeights(path string) (map[string]safetensors.Tensor, map[string]string, error) {
	isPth, err := IsPthFile(path)
	if err != nil {
		return nil, nil, err
	}
	if isPth {
		tensors, err := ReadPth(path)
		return tensors, nil, err
	}
	return safetensors.Read(path)
}

// SetState copies tensors (from source, named in errors) into m by state_dict name. Every
// tensor of m must be present with its shape and no others may be, except BatchNorm's
// num_batches_tracked counters and the InstanceNorm running statistics of PyTorch < 0.4
// checkpoints, which are ignored. On any error m is unchanged.
func SetState(m Module, tensors map[string]safetensors.Tensor, source string) error {
	named := m.Named()
	for _, t := range m.State() {
		f, ok := tensors[t.Name]
		if !ok {
			return fmt.Errorf("%s: %w: %q (shape %v) for %v", source, ErrMissing, t.Name, t.Shape, m.Spec())
		}
		if !slices.Equal(f.Shape, t.Shape) {
			return fmt.Errorf("%s: %w: %q is %v in the file, %v in %v (another width or norm?)", source, ErrShape, t.Name, f.Shape, t.Shape, m.Spec())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		// PyTorch < 0.4 saved InstanceNorm running statistics that the network does not have.
		stale := m.Spec().Norm == Instance && (strings.HasSuffix(name, ".running_mean") || strings.HasSuffix(name, ".running_var"))
		if _, ok := named[name]; !ok && !stale && !strings.HasSuffix(name, ".num_batches_tracked") {
			return fmt.Errorf("%s: %w: %q is not in %v (another kind, norm or block count?)", source, ErrUnexpected, name, m.Spec())
		}
	}
	for _, t := range m.State() {
		t.CopyFromHost(tensors[t.Name].Data)
	}
	return nil
}
