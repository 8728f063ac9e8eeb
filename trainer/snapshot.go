package trainer

import (
	"slices"

	"wkd/sharding"
)

// snapshot is the training state before the step in flight of a multi-replica run, kept in
// memory so an abandoned step can be undone: plain copies into buffers reused every step, no
// encoding or hashing (a checkpoint's job).
type snapshot struct {
	nets       [][]float32 // every network's state tensors, in nets() order
	optG, optD map[string][]float32
	rng        []byte
	pools      [2][][]float32
	step       int64
	at         sharding.Position
}

func (t *Trainer) saveSnapshot() {
	s := &t.snapshot
	i := 0
	for _, n := range t.nets() {
		for _, p := range n.net.State() {
			if i == len(s.nets) {
				s.nets = append(s.nets, nil)
			}
			s.nets[i] = append(s.nets[i][:0], p.Data...)
			i++
		}
	}
	s.optG, s.optD = t.optG.State(), t.optD.State()
	s.rng = append(s.rng[:0], t.rng.State()...)
	for k, pool := range []*ImagePool{t.poolA, t.poolB} {
		s.pools[k] = s.pools[k][:0]
		if pool != nil {
			for _, img := range pool.images {
				s.pools[k] = append(s.pools[k], slices.Clone(img))
			}
		}
	}
	s.step, s.at = t.step, t.at
}

// restoreSnapshot undoes everything since saveSnapshot.
func (t *Trainer) restoreSnapshot() error {
	s := &t.snapshot
	i := 0
	for _, n := range t.nets() {
		for _, p := range n.net.State() {
			copy(p.Data, s.nets[i])
			i++
		}
	}
	if err := t.optG.SetState(s.optG); err != nil {
		return err
	}
	if err := t.optD.SetState(s.optD); err != nil {
		return err
	}
	if err := t.rng.SetState(s.rng); err != nil {
		return err
	}
	for k, pool := range []*ImagePool{t.poolA, t.poolB} {
		if pool != nil {
			pool.images = s.pools[k]
			s.pools[k] = nil // the pool owns these now
		}
	}
	t.step, t.at = s.step, s.at
	return nil
}
