package trainer

import (
	"wkd/ops"
	"wkd/sharding"
)

// snapshot is the training state before the step in flight of a multi-replica run, kept in
// memory so an abandoned step can be undone: plain copies into buffers reused every step (the
// image pools keep an undo journal instead), no encoding or hashing (a checkpoint's job).
type snapshot struct {
	nets       [][]float32 // every network's state tensors, in nets() order
	optG, optD []ops.AdamSnapshot
	rng        []byte
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
			s.nets[i] = append(s.nets[i][:0], make([]float32, p.Numel())...)
			p.CopyToHost(s.nets[i])
			i++
		}
	}
	t.optG.saveTo(&s.optG)
	t.optD.saveTo(&s.optD)
	s.rng = append(s.rng[:0], t.rng.State()...)
	for _, pool := range []*ImagePool{t.poolA, t.poolB} {
		if pool != nil {
			pool.mark()
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
			p.CopyFromHost(s.nets[i])
			i++
		}
	}
	t.optG.restoreFrom(s.optG)
	t.optD.restoreFrom(s.optD)
	if err := t.rng.SetState(s.rng); err != nil {
		return err
	}
	for _, pool := range []*ImagePool{t.poolA, t.poolB} {
		if pool != nil {
			pool.rollback()
		}
	}
	t.step, t.at = s.step, s.at
	return nil
}
