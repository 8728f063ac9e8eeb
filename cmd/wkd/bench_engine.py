# The PyTorch side of `wkd bench-engine`: the identical GAN training step on the CPU, timed.
# It runs after the reference networks (ResGen, NLayerD from internal/torchnets/nets.py);
# the step is the generator update (LSGAN + L1 x100) then the discriminator update, each with
# Adam(2e-4, 0.5, 0.999).
import json
import statistics
import sys
import time

import torch

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)


def bench_step(ngf):
    G = ResGen(3, 3, ngf, "instance", False, 9)
    D = NLayerD(3, args["ndf"], 3, "instance")
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
