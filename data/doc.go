// Package data loads the image datasets of pytorch-CycleGAN-and-pix2pix into float32 NCHW batches
// and builds small demo datasets from Fashion-MNIST.
//
// Contract:
//   - Two folder layouts, as the reference reads them: aligned (root/<phase>/*.png|jpg, each image
//     A|B side by side, width 2W and height W) and unaligned (root/<phase>A, root/<phase>B).
//   - Pixels follow the reference pipeline: PIL convert('RGB'), Grayscale(1) = ITU-R 601 luma
//     (PIL's integer formula), resize with a bicubic filter that reproduces PIL's BICUBIC
//     bit for bit (a = -0.5, antialiased when shrinking, 8-bit fixed point, horizontal pass
//     first), crop, horizontal flip, then x/255*2-1 so values lie in [-1, 1].
//   - Randomness (crop position, flip, the B image of an unaligned pair) is a pure function of
//     (seed, epoch, sample index): a sample is augmented the same way whichever rank or worker
//     loads it, so a sharded run sees exactly the batches of a one-process run.
//   - Test mode (Config.Train false) uses no randomness: centre crop, no flip, B = index % len(B).
//   - The Loader decodes ahead of the consumer with N goroutines and a bounded queue; batches come
//     out in the order of the index lists it is handed (package sharding makes those lists).
//   - Builders (Build, `wkd data`) make edges2shoes-mini (aligned: A = Canny edge map, thin
//     black lines on white, standing in for the HED edges of edges2shoes; B = the Fashion-MNIST
//     sandal/sneaker/ankle boot, inverted to a dark item on white) and sneaker2boot (unaligned:
//     sneakers | ankle boots). They write into a temporary folder renamed into place, and a
//     marker file makes a re-run with the same flags a no-op.
//   - Errors are returned, never panics, for anything read from disk; each names the file and
//     wraps one of the Err* values below. Misuse by the caller (a nil dataset) panics.
//
// Dimension letters: N batch, C channels, H height, W width.
package data
