package trainer

import (
	"time"

	"wkd/ops"
)

// BucketSync is a GradSync that can average buckets of gradients while backward still runs:
// Begin announces a step's buckets, Submit hands one over as soon as its gradients are
// complete (buckets fill in reverse layer order, as backward produces them), Wait returns
// when all are averaged in place.
type BucketSync interface {
	GradSync
	Begin(nbuckets int) error
	Submit(b int, data []float32) error
	Wait() error
}

// Aborter is a BucketSync that can end the all-reduce it began, telling every peer, when this
// replica cannot hand over all of the step's buckets (its device failed). It is called from
// the trainer's goroutine, while no Submit runs.
type Aborter interface {
	Abort(err error)
}

// bucketFloats is the size a bucket is filled to before it is handed over: large enough that
// per-message costs vanish, small enough that the first bucket leaves early in backward.
// A variable so that tests can make buckets small enough to split tiny networks.
var bucketFloats = 256 << 10 // 1 MiB

// overlap sends one parameter group's gradients bucket by bucket during backward. Each
// parameter's readiness hook (ops.Tensor.SetGradReady) copies its weighted gradient into its
// bucket's buffer; the last parameter of a bucket submits it.
//
// On a device the gradients of a bucket's parameters are themselves views into one device
// allocation with a pinned host mirror (ops.Pinned): when the bucket's last parameter is ready
// it is weighted in place and crosses to the host in one copy, and the average comes back in
// one copy, so bufs are the pinned mirrors.
type overlap struct {
	params   []*ops.Tensor
	bucketOf []int
	offset   []int       // where each parameter sits in its bucket's buffer
	members  [][]int     // parameters of each bucket
	bufs     [][]float32 // (bucket) contiguous gradients
	left     []int
	sent     []bool
	sync     BucketSync
	scale    float32
	active   bool
	err      error
	dev      ops.Device
	pinned   []ops.Pinned // (bucket) device gradients and their host mirrors, on a device
}

// newOverlap buckets params (forward order) from the last one back and installs the hooks.
func newOverlap(params []*ops.Tensor, dev ops.Device) *overlap {
	o := &overlap{params: params, bucketOf: make([]int, len(params)), offset: make([]int, len(params)), dev: dev}
	fill := bucketFloats
	for i := len(params) - 1; i >= 0; i-- {
		n := params[i].Numel()
		if fill+n > bucketFloats && fill > 0 {
			o.members = append(o.members, nil)
			o.bufs = append(o.bufs, nil)
			fill = 0
		}
		b := len(o.members) - 1
		o.bucketOf[i], o.offset[i] = b, fill
		o.members[b] = append(o.members[b], i)
		fill += n
		if dev == nil {
			o.bufs[b] = append(o.bufs[b], make([]float32, n)...)
		}
	}
	if dev != nil {
		for b, members := range o.members {
			total := 0
			for _, i := range members {
				total += params[i].Numel()
			}
			pin := dev.NewPinned(total)
			o.pinned = append(o.pinned, pin)
			o.bufs[b] = pin.Host()
			for _, i := range members {
				params[i].BindGrad(pin.Mem(), o.offset[i])
			}
		}
	}
	o.left = make([]int, len(o.members))
	o.sent = make([]bool, len(o.members))
	for i, p := range params {
		p.SetGradReady(func() { o.ready(i) })
	}
	return o
}

// begin arms the hooks for one backward pass.
func (o *overlap) begin(s BucketSync, scale float32) error {
	o.sync, o.scale, o.active, o.err = s, scale, true, nil
	for b := range o.members {
		o.left[b], o.sent[b] = len(o.members[b]), false
	}
	return s.Begin(len(o.members))
}

func (o *overlap) ready(i int) {
	if !o.active {
		return
	}
	b := o.bucketOf[i]
	if o.dev != nil {
		if o.left[b]--; o.left[b] == 0 {
			o.toHost(b)
			o.submit(b)
		}
		return
	}
	dst := o.bufs[b][o.offset[i] : o.offset[i]+o.params[i].Numel()]
	for k, g := range o.params[i].Grad {
		dst[k] = g * o.scale
	}
	if o.left[b]--; o.left[b] == 0 {
		o.submit(b)
	}
}

// toHost weights a device bucket's gradients and copies them to its pinned mirror.
func (o *overlap) toHost(b int) {
	pin := o.pinned[b]
	if o.scale != 1 {
		all := ops.Buf{Mem: pin.Mem(), Shape: []int{len(pin.Host())}}
		o.dev.Scale(all, all, o.scale)
	}
	pin.ToHost()
}

func (o *overlap) submit(b int) {
	o.sent[b] = true
	if o.err != nil {
		return
	}
	if o.dev != nil {
		if err := o.dev.Err(); err != nil {
			// A failed device copied nothing: the mirror still holds the last step's
			// gradient. Send none of this step, and end it on every peer.
			o.err = err
			if a, ok := o.sync.(Aborter); ok {
				a.Abort(err)
			}
			return
		}
	}
	o.err = o.sync.Submit(b, o.bufs[b])
}

// finish hands over what backward did not reach (unused or frozen parameters, whose
// gradients are then zero or stale but identical everywhere), waits, and copies the averages
// back into the gradients.
func (o *overlap) finish() error {
	o.active = false
	for b := range o.members {
		if o.sent[b] {
			continue
		}
		if o.dev != nil {
			o.toHost(b)
			o.submit(b)
			continue
		}
		for _, i := range o.members[b] {
			dst := o.bufs[b][o.offset[i] : o.offset[i]+o.params[i].Numel()]
			for k, g := range o.params[i].Grad {
				dst[k] = g * o.scale
			}
		}
		o.submit(b)
	}
	for _, p := range o.params {
		p.ClearPendingUses()
	}
	if o.err != nil {
		return o.err
	}
	if err := o.sync.Wait(); err != nil {
		return err
	}
	if o.dev != nil {
		for _, pin := range o.pinned {
			pin.FromHost()
		}
		return o.dev.Err()
	}
	for b, members := range o.members {
		for _, i := range members {
			copy(o.params[i].Grad, o.bufs[b][o.offset[i]:o.offset[i]+o.params[i].Numel()])
		}
	}
	return nil
}

// beginGroup starts overlapped communication of one group's gradients for the backward pass
// about to run, when the world's synchronizer supports it and overlap is on.
func (t *Trainer) beginGroup(o *overlap) bool {
	bs, ok := t.world.Sync.(BucketSync)
	if !ok || t.world.Size <= 1 || !t.overlapOn {
		return false
	}
	if err := o.begin(bs, t.shareWeight); err != nil {
		o.err, o.active = err, false
		return true // finishGroup reports it
	}
	return true
}

// syncGroup completes a group's synchronization after backward: the overlapped buckets, or
// the whole group at once.
func (t *Trainer) syncGroup(o *overlap, started bool, rep *StepReport) error {
	if !started {
		if t.dev != nil {
			return t.syncDeviceGrads(o, rep)
		}
		return t.syncGrads(o.params, rep)
	}
	t0 := time.Now()
	err := o.finish()
	rep.SyncTime += time.Since(t0)
	return err
}

// syncDeviceGrads is syncGrads for gradients on a device: every bucket of the group is
// weighted and copied to its pinned mirror in one transfer, averaged on the host, and copied
// back in one transfer. The synchronizer gets one slice of a mirror per parameter, in
// syncGrads' order: the all-reduce frames what it is handed, so --device cpu and cuda
// replicas of one cluster must hand it the same slices.
func (t *Trainer) syncDeviceGrads(o *overlap, rep *StepReport) error {
	if t.world.Sync == nil || t.world.Size == 1 {
		return nil
	}
	o.scale = t.shareWeight
	t0 := time.Now()
	t.syncBufs = t.syncBufs[:0]
	for b := range o.pinned {
		o.toHost(b)
	}
	for i := len(o.params) - 1; i >= 0; i-- {
		b, off := o.bucketOf[i], o.offset[i]
		t.syncBufs = append(t.syncBufs, o.bufs[b][off:off+o.params[i].Numel()])
	}
	if err := t.deviceErr(t.step + 1); err != nil {
		return err // the mirrors hold the last step's gradients: send nothing
	}
	err := t.world.Sync.Average(t.syncBufs)
	if err == nil {
		for _, pin := range o.pinned {
			pin.FromHost()
		}
		err = t.dev.Err()
	}
	rep.SyncTime += time.Since(t0)
	return err
}
