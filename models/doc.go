// Package models builds the image-to-image GAN networks of pytorch-CycleGAN-and-pix2pix from
// typed kinds, and only that: generators (ResNet, U-Net), discriminators (PatchGAN, pixel),
// their weight init, parameter and MAC counts, and safetensors I/O. Losses, optimizers and the
// training loop live in trainer.
//
// Dimension letters: N batch, C channels, H, W height and width, K output channels, KH, KW
// kernel size.
//
// Contract:
//   - Build(Spec) returns a Module whose layers, order and tensor names equal the reference's
//     nn.Module tree and state_dict keys ("model.1.weight", "model.10.conv_block.1.weight",
//     "model.model.1.model.1.weight", "net.0.bias"), so weights convert both ways by name.
//     BatchNorm's running_mean and running_var are Buffers; its num_batches_tracked counter is
//     not kept (it only matters for momentum=None, which the reference never uses): Save
//     writes none and Load ignores any it finds.
//   - Behaviour follows the reference, quirks included: InstanceNorm has no affine parameters
//     and no running statistics; convolutions followed by a norm carry a bias only with
//     instance norm. (The reference's in-place LeakyReLU makes a U-Net skip carry
//     LeakyReLU(x) instead of x; the ReLU that follows makes the two identical, and the parity
//     tests run PyTorch modules with that in-place LeakyReLU.)
//   - Forward(tp, x, train): train=true uses batch statistics (updating running ones) and
//     live dropout, drawing from the RNG given to SetRNG; train=false uses running statistics
//     and no dropout. The reference's test.py runs pix2pix with train=true unless --eval.
//   - Bad specs and unreadable or mismatched weight files are returned errors (ErrSpec,
//     ErrMissing, ErrUnexpected, ErrShape, naming the file and the tensor); a wrong input
//     shape given to Forward is a programming error and panics naming both shapes.
//   - Parameter gradients accumulate (+=), as everywhere in ops.
//
// Beside the GANs: Inception, the Inception-v3 of FID (pytorch-fid's variant), forward only,
// reading pytorch-fid's weights file; and ReadPth, which reads a torch.save'd state_dict in Go.
//
// The reference's .pth checkpoints (e.g. latest_net_G_A.pth) load directly (Load reads a
// torch.save'd state_dict through ReadPth); `wkd convert` turns them into safetensors that record
// their architecture, and safetensors back into a .pth (WritePth) that PyTorch's
// load_state_dict takes with strict=True.
package models
