// Package sharding decides which samples each rank sees in an epoch, so that a data-parallel run
// consumes exactly the batches of a one-process run with the same global batch size, and keeps
// doing so when the world changes size mid-epoch.
//
// Contract:
//   - Each epoch has one permutation of the N samples, a pure function of (seed, epoch): PCG-DXSM
//     from math/rand/v2 seeded with mixed (seed, epoch), and our own Fisher-Yates with Lemire's
//     bounded draw, so the order is stable across Go releases and machines.
//   - Training walks the permutation in global batches of B samples. A Position (epoch, pos)
//     names the global sample position reached; a step covers [pos, pos+B). Positions, not step
//     numbers or ranks, are what a checkpoint saves: they mean the same thing in any world.
//   - Rank r of a world of w takes a contiguous share of each global batch: n = len(batch) is
//     split into w parts whose sizes differ by at most one, the first n%w ranks taking one
//     more (rank r starts at r*(n/w) + min(r, n%w)). The global batch size stays B whatever w
//     is, so the samples of a step are those of one-process training; ranks may get uneven
//     shares (or none, when n < w). To make the averaged gradient equal one process's mean over
//     the batch, each rank scales its mean loss by Weight (its share over n) and the
//     all-reduce sums. (Batch-norm statistics are still per rank.)
//   - After a view change (w -> w') the run resumes at the Position of the last completed step
//     and splits the remaining global batches among the new world: within an epoch no sample
//     is repeated or skipped.
//   - The tail: with DropLast false (the default, like PyTorch's DataLoader drop_last=False) the
//     last global batch holds the N mod B remaining samples; with DropLast true it is dropped.
//   - Bad configuration is an error (Validate, New); calling Shard with a rank outside the world
//     or a non-positive batch is a programming error and panics with the values named.
package sharding
