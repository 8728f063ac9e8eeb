// Package metrics measures generated images against real ones and writes the evaluation
// report: PSNR, SSIM and L1 for paired data, each kept per test image as well as averaged; for
// any data, the energy of every Haar wavelet band, the azimuthally averaged power spectrum's
// distance to real images, and a Frechet distance on the features of a small classifier
// (FeatureNet: the Fashion-MNIST net, or a texture net trained on an ImageFolder, both by
// `wkd train-features`; the weights file says which). With the FID Inception network of
// package models, FID (FrechetDistance on its features, as pytorch-fid computes it) and KID
// (KernelDistance, as torch-fidelity does). Images are float32 (C, H, W) in [-1, 1], as the
// generators produce.
//
// Functions take whole image sets and return numbers; the report renders them as JSON and as
// one self-contained HTML page (inline SVG charts, PNG images as data URIs). Summarize merges
// the reports of several seeds: mean ± sd, and paired bootstrap intervals of the differences
// between models (PairedBootstrap), resampling seeds and, for per-image metrics, test images.
package metrics
