# The reference's networks rebuilt in PyTorch with the same module tree (hence the same
# state_dict keys), written from the reference's description. Shared by every package's
# parity tests (torchref.Nets) and bench-engine. In-place activations are kept where the reference has
# them: the U-Net skip depends on it.
import torch
import torch.nn as nn


def make_norm(kind):
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c)  # affine=False, no running stats
    if kind == "batch":
        return lambda c: nn.BatchNorm2d(c)
    return lambda c: nn.Identity()


class ResBlock(nn.Module):
    def __init__(self, dim, norm, dropout, bias):
        super().__init__()
        seq = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim), nn.ReLU(True)]
        if dropout:
            seq.append(nn.Dropout(0.5))
        seq += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm(dim)]
        self.conv_block = nn.Sequential(*seq)

    def forward(self, x):
        return x + self.conv_block(x)


class ResGen(nn.Module):
    def __init__(self, cin, cout, ngf, norm_kind, dropout, blocks):
        super().__init__()
        norm, bias = make_norm(norm_kind), norm_kind == "instance"
        seq = [nn.ReflectionPad2d(3), nn.Conv2d(cin, ngf, 7, bias=bias), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf << i
            seq += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm(2 * c), nn.ReLU(True)]
        seq += [ResBlock(4 * ngf, norm, dropout, bias) for _ in range(blocks)]
        for i in range(2):
            c = ngf << (2 - i)
            seq += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                    norm(c // 2), nn.ReLU(True)]
        seq += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cout, 7), nn.Tanh()]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class Skip(nn.Module):
    def __init__(self, outer, inner, norm, bias, cin=None, sub=None, outermost=False, innermost=False, dropout=False):
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(cin or outer, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            seq = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            seq = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                   nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias), norm(outer)]
        else:
            seq = [nn.LeakyReLU(0.2, True), down, norm(inner), sub, nn.ReLU(True),
                   nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=bias), norm(outer)]
            if dropout:
                seq.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UGen(nn.Module):
    def __init__(self, cin, cout, downs, ngf, norm_kind, dropout):
        super().__init__()
        norm, bias = make_norm(norm_kind), norm_kind == "instance"
        b = Skip(8 * ngf, 8 * ngf, norm, bias, innermost=True)
        for _ in range(downs - 5):
            b = Skip(8 * ngf, 8 * ngf, norm, bias, sub=b, dropout=dropout)
        for mult in (4, 2, 1):
            b = Skip(mult * ngf, 2 * mult * ngf, norm, bias, sub=b)
        self.model = Skip(cout, ngf, norm, bias, cin=cin, sub=b, outermost=True)

    def forward(self, x):
        return self.model(x)


class NLayerD(nn.Module):
    def __init__(self, cin, ndf, layers, norm_kind):
        super().__init__()
        norm, bias = make_norm(norm_kind), norm_kind == "instance"
        seq = [nn.Conv2d(cin, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        m = 1
        for n in range(1, layers):
            p, m = m, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * p, ndf * m, 4, stride=2, padding=1, bias=bias), norm(ndf * m), nn.LeakyReLU(0.2, True)]
        p, m = m, min(2 ** layers, 8)
        seq += [nn.Conv2d(ndf * p, ndf * m, 4, stride=1, padding=1, bias=bias), norm(ndf * m), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * m, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class PixelD(nn.Module):
    def __init__(self, cin, ndf, norm_kind):
        super().__init__()
        norm, bias = make_norm(norm_kind), norm_kind == "instance"
        self.net = nn.Sequential(
            nn.Conv2d(cin, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), norm(2 * ndf), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * ndf, 1, 1, bias=bias))

    def forward(self, x):
        return self.net(x)
