# The PyTorch side of `wkd bench-engine`: the identical GAN training step on the CPU, timed.
# Networks follow the pytorch-CycleGAN-and-pix2pix definitions (ResNet generator with instance
# norm, 70x70 PatchGAN); the step is the generator update (LSGAN + L1 x100) then the
# discriminator update, each with Adam(2e-4, 0.5, 0.999).
import json
import statistics
import sys
import time

import torch
import torch.nn as nn

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)


def resnet_generator(nc, ngf, n_blocks):
    norm = lambda c: nn.InstanceNorm2d(c)
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(nc, ngf, 7), norm(ngf), nn.ReLU(True)]
    c = ngf
    for _ in range(2):
        layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), norm(2 * c), nn.ReLU(True)]
        c *= 2

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c), nn.ReLU(True),
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c))

        def forward(self, x):
            return x + self.conv_block(x)

    layers += [Block() for _ in range(n_blocks)]
    for _ in range(2):
        layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), norm(c // 2), nn.ReLU(True)]
        c //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, nc, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patch_discriminator(nc, ndf, n_layers=3):
    layers = [nn.Conv2d(nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2 ** n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1), nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    return nn.Sequential(*layers)


def bench_step(ngf):
    G = resnet_generator(3, ngf, 9)
    D = patch_discriminator(3, args["ndf"])
    oG = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    s, n = args["size"], args["batch"]
    x = torch.rand(n, 3, s, s) * 2 - 1
    y = torch.rand(n, 3, s, s) * 2 - 1
    mse, l1 = nn.MSELoss(), nn.L1Loss()

    def step():
        fake = G(x)
        oG.zero_grad()
        pf = D(fake)
        lg = mse(pf, torch.ones_like(pf)) + 100 * l1(fake, y)
        lg.backward()
        oG.step()
        oD.zero_grad()
        pr, pf = D(y), D(fake.detach())
        ld = 0.5 * (mse(pr, torch.ones_like(pr)) + mse(pf, torch.zeros_like(pf)))
        ld.backward()
        oD.step()

    for _ in range(args["warmup"]):
        step()
    times = []
    for _ in range(args["reps"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def gemm_gflops(m, n, k):
    a, b = torch.rand(m, k), torch.rand(k, n)
    torch.mm(a, b)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t0)
    return 2.0 * m * n * k / statistics.median(ts) / 1e9


out = {"steps": {str(g): bench_step(g) for g in args["ngfs"]},
       "gemm": {f"{m}x{n}x{k}": gemm_gflops(m, n, k) for (m, n, k) in args["gemm"]},
       "torch": torch.__version__, "threads": torch.get_num_threads()}
print(json.dumps(out))
