package trainer

import (
	"fmt"
	"slices"
	"strings"

	"wkd/ops"
)

// optimizer is one Adam per network of a side (G_A and G_B; or D_A and D_B). Adam is
// per-parameter, so this equals the reference's single Adam over itertools.chain of both,
// while keeping each network's state names (the networks share their state_dict keys).
type optimizer struct {
	names []string
	adams []*ops.Adam
}

func newOptimizer(cfg ops.AdamConfig, nets []namedNet) *optimizer {
	o := &optimizer{}
	for _, n := range nets {
		o.names = append(o.names, n.name)
		o.adams = append(o.adams, ops.NewAdam([]ops.ParamGroup{{Params: n.net.Params()}}, cfg))
	}
	return o
}

func (o *optimizer) ZeroGrad() {
	for _, a := range o.adams {
		a.ZeroGrad()
	}
}

func (o *optimizer) Step() {
	for _, a := range o.adams {
		a.Step()
	}
}

func (o *optimizer) SetLR(lr float32) {
	for _, a := range o.adams {
		a.SetLR(lr)
	}
}

func (o *optimizer) LR() float32 { return o.adams[0].GroupLR(0) }

// State is every Adam's state keyed "<net>/<adam key>".
func (o *optimizer) State() map[string][]float32 {
	out := map[string][]float32{}
	for i, a := range o.adams {
		for k, v := range a.State() {
			out[o.names[i]+"/"+k] = v
		}
	}
	return out
}

// SetState loads what State returned; nothing changes on error.
func (o *optimizer) SetState(s map[string][]float32) error {
	per, err := o.checkState(s)
	if err != nil {
		return err
	}
	for i, a := range o.adams {
		if err := a.SetState(per[i]); err != nil {
			panic("trainer: optimizer state changed after its check: " + err.Error())
		}
	}
	return nil
}

// CheckState reports the error SetState would return, changing nothing.
func (o *optimizer) CheckState(s map[string][]float32) error {
	_, err := o.checkState(s)
	return err
}

// checkState splits s by network and checks each part against that network's Adam.
func (o *optimizer) checkState(s map[string][]float32) ([]map[string][]float32, error) {
	per := make([]map[string][]float32, len(o.adams))
	for i := range per {
		per[i] = map[string][]float32{}
	}
	for k, v := range s {
		net, rest, _ := strings.Cut(k, "/")
		i := slices.Index(o.names, net)
		if i < 0 {
			return nil, fmt.Errorf("%w: %q belongs to no network of this run (%s)", ops.ErrOptimizerState, k, strings.Join(o.names, ", "))
		}
		per[i][rest] = v
	}
	for i, a := range o.adams {
		if err := a.CheckState(per[i]); err != nil {
			return nil, fmt.Errorf("%s: %w", o.names[i], err)
		}
	}
	return per, nil
}

// saveTo and restoreFrom keep an in-memory copy of every Adam's state (rollback).
func (o *optimizer) saveTo(s *[]ops.AdamSnapshot) {
	for len(*s) < len(o.adams) {
		*s = append(*s, ops.AdamSnapshot{})
	}
	for i, a := range o.adams {
		a.SaveTo(&(*s)[i])
	}
}

func (o *optimizer) restoreFrom(s []ops.AdamSnapshot) {
	for i, a := range o.adams {
		a.RestoreFrom(&s[i])
	}
}
