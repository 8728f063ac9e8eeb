// Package trainer owns the objectives and the loops: pix2pix and CycleGAN teacher training,
// wavelet knowledge distillation of a small student from a frozen teacher (and its two
// baselines, pixel KD and no KD), learning-rate schedules, image pools and checkpoints.
//
// Notation follows the papers, as the reference code does: for CycleGAN, G_A maps A to B (the
// paper's G), G_B maps B to A (F), D_A judges domain B images (D_Y) and D_B judges domain A
// (D_X). For pix2pix, G maps A to B and D judges (A, B) pairs.
//
// WKD (Zhang et al., CVPR 2022): with H_j the three high-frequency bands of level j of a
// J-level 2-D Haar DWT (LL_J excluded),
//
//	L_wkd = sum_j mean(dist(H_j(student(x)), H_j(teacher(x))))
//
// and the student generator's loss is its task loss + alpha * L_wkd. The teacher runs with
// the tape's recording off, so it costs no tape memory and gets no gradient.
//
// Runs are folders: the resolved configuration (config.json), a JSON log (log.jsonl, one line
// per logged step), checkpoints (ckpt/step-*.safetensors, written to a temporary file and
// renamed, each carrying a SHA-256 of its contents that Load verifies) and the final
// generators under their reference names (G.safetensors, or G_A/G_B.safetensors).
// Errors are returned for anything read from disk; programming errors panic.
//
// Config.Device puts the networks, activations, losses, image pools and Adam state on a device
// (wkd/ops' seam; "cuda" in a binary built with -tags cuda). The loops are the same code; the
// host then sees batches going in and, by explicit copies, logged loss values, checkpoints,
// rollback snapshots and gradient buckets (one pinned copy each way) for the all-reduce.
// A device's errors are sticky: once it fails, the run sends nothing more to its peers, writes
// no checkpoint, and returns ErrDevice naming --device and the step.
package trainer
