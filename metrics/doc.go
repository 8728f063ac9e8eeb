// Package metrics measures generated images against real ones and writes the evaluation
// report: PSNR, SSIM and L1 for paired data; for any data, the energy of every Haar wavelet
// band, the azimuthally averaged power spectrum's distance to real images, and a Frechet
// distance on the features of a small classifier (FeatureNet, trained on Fashion-MNIST by
// `wkd train-features`). Images are float32 (C, H, W) in [-1, 1], as the generators produce.
//
// Functions take whole image sets and return numbers; the report renders them as JSON and as
// one self-contained HTML page (inline SVG charts, PNG images as data URIs).
package metrics
