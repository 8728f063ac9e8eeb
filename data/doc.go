// Package data loads the image datasets of pytorch-CycleGAN-and-pix2pix into float32 NCHW batches
// and builds datasets from Fashion-MNIST and from the texture photographs of a Debian package.
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
//   - BuildTextures makes RGB datasets with real fine detail from the JPEGs of the Debian package
//     openarena-081-textures (GPL-2+): the .deb is found in or fetched into a cache folder
//     (`apt-get download`, no root), read in Go (ar, xz, tar, zip) and its .pk3 unpacked there
//     once. Textures are classified into materials by set and file name (effects, skies,
//     liquids, lamps, signs, trims and the like are left out, as are textures smaller than the
//     image size, which are never upscaled, and polished ones without fine detail). Near-duplicate
//     variants form one group, and groups, stratified by material, are split train/test by the
//     seed: train folders draw on training groups, val and test folders on test groups, and
//     texture-splits.json lists which files each side used. Crops keep the native resolution
//     (or shrink at most 2x). sketch2texture is aligned: B a collage of 2-6 texture crops in
//     recursively split rectangles, A its sketch (each rectangle flat in its crop's mean colour,
//     the crop's Canny edges and the borders in black). stone2metal is unaligned: A stone, brick,
//     concrete; B metal, rust, grates. texture-classes is an ImageFolder for a texture
//     classifier: <split>/<material>/NNNNN.png, one folder per material with enough groups.
//     The same flags give byte-identical files; the package's copyright and CREDITS files are
//     copied beside the images.
//   - Errors are returned, never panics, for anything read from disk; each names the file and
//     wraps one of the Err* values below. Misuse by the caller (a nil dataset) panics.
//
// Dimension letters: N batch, C channels, H height, W width.
package data
