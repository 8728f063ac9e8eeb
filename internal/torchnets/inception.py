# Inception-v3 as FID uses it, built from torchvision's Inception3 (0.14): the A, C and first E
# blocks average-pool without counting the padding, the last E block max-pools; no auxiliary
# head; 1008 classes, as in the TF-ported weights file. Independent of wkd's Go network: the
# parity tests run both on the same weights and images.
import torch
import torch.nn.functional as F
from torchvision.models import inception as tvi


def _avg(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FidA(tvi.InceptionA):
    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg(x))], 1)


class FidC(tvi.InceptionC):
    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = m(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg(x))], 1)


class FidE(tvi.InceptionE):
    def __init__(self, channels, max_pool):
        super().__init__(channels)
        self.max_pool = max_pool

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd), self.branch_pool(pooled)], 1)


def fid_inception():
    net = tvi.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = FidA(192, 32), FidA(256, 64), FidA(288, 64)
    net.Mixed_6b, net.Mixed_6c = FidC(768, 128), FidC(768, 160)
    net.Mixed_6d, net.Mixed_6e = FidC(768, 160), FidC(768, 192)
    net.Mixed_7b, net.Mixed_7c = FidE(1280, False), FidE(2048, True)
    return net.eval()


def randomize(net, seed):
    # Kaiming-scaled convs; BatchNorm variances near 0.01 with weights near 0.1, so that
    # activations stay of order 1 and the eps of 1e-3 matters as it does in trained weights.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("conv.weight"):
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("bn.weight"):
                t.copy_(0.05 + 0.1 * torch.rand(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.005 + 0.01 * torch.rand(t.shape, generator=g))
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return net


def fid_features(net, x, dims=2048):
    # x: (N, 3, H, W) in [0, 1] -> (N, dims), as pytorch-fid's model with resize_input and
    # normalize_input, its block outputs averaged over space.
    with torch.no_grad():
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for m in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1):
            x = m(x)
        if dims > 64:
            for m in (net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2):
                x = m(x)
        if dims > 192:
            for m in (net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e):
                x = m(x)
        if dims > 768:
            for m in (net.Mixed_7a, net.Mixed_7b, net.Mixed_7c):
                x = m(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
