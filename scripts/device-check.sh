#!/usr/bin/env bash
# The one check to run on a GPU machine (CUDA toolkit + driver + PyTorch with CUDA; Go comes
# from .devgo/on-device.sh when present). From the repository root:
#
#   bash scripts/device-check.sh
#
# 1. builds wkd/ops/cuda with -tags cuda against the machine's CUDA,
# 2. runs the GPU parity tests (every kernel against wkd/ops, tolerance 1e-4, worst error logged),
# 3. runs the models' and the trainer's device tests: a ResNet + PatchGAN step, and a whole WKD
#    distillation run (and its gradient buckets) on --device cuda against --device cpu,
# 4. times one WKD distillation step (teacher ResNet-9 ngf 64 without gradient, student ngf 16,
#    PatchGAN ndf 64, LSGAN + L1 on 3 Haar levels' high bands, Adam on G and D; 256x256, batch
#    1 and 4) in wkd-cuda (BenchmarkDistillStep) and the same step in PyTorch on the same GPU,
#    strict FP32 on both sides (cuBLAS SGEMM here; TF32 off in PyTorch), and prints the medians.
# Last line: "ratio: X" = wkd-cuda throughput / PyTorch throughput at batch 4, that is PyTorch's
# median step time / wkd-cuda's (above 1: wkd is faster).
# Budget: under 8 minutes including the build (not yet timed on a GPU; each
# stage's timeout only guards against a hang, and the last log line gives the total).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
log() { echo "device-check: $*" >&2; }
die() { log "$*"; exit 1; }

[ -f .devgo/on-device.sh ] && source .devgo/on-device.sh
command -v go >/dev/null || die "no Go on PATH (expected .devgo/on-device.sh to provide it)"
py="${PYTHON:-python3}"
command -v nvidia-smi >/dev/null && nvidia-smi -L >&2 || true

# CUDA: $CUDA_HOME, else the toolkit nvcc belongs to.
cuda="${CUDA_HOME:-}"
if [ -z "$cuda" ] && command -v nvcc >/dev/null; then
  cuda="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
fi
[ -n "$cuda" ] && [ -e "$cuda/include/cuda.h" ] || die "no CUDA toolkit found (set CUDA_HOME to the folder holding include/cuda.h)"
libdir="$cuda/lib64"
[ -d "$libdir" ] || libdir="$cuda/lib"
export CGO_ENABLED=1
export CGO_CFLAGS="-I$cuda/include"
# stubs/ only satisfies the linker; at run time the driver's own libcuda.so.1 is loaded.
export CGO_LDFLAGS="-L$libdir -L$libdir/stubs"
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "CUDA at $cuda, $(go version)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Kernels: the committed PTX must be what kernels/*.cu compile to (warn only: nvcc versions
# differ in comments and register names).
if command -v nvcc >/dev/null; then
  mkdir -p "$work/ptx" && cp ops/cuda/kernels/*.cu ops/cuda/kernels/*.cuh ops/cuda/kernels/gen.sh "$work/ptx/"
  if (cd "$work/ptx" && NVCC=nvcc bash gen.sh) 2>"$work/gen.err"; then
    for f in "$work"/ptx/*.ptx; do
      b="$(basename "$f")"
      diff -q <(grep -v '^//' "$f") <(grep -v '^//' "ops/cuda/kernels/$b") >/dev/null ||
        log "note: kernels/$b differs from this machine's nvcc output (rerun go generate if a .cu changed)"
    done
  else
    log "note: nvcc could not compile the kernels here: $(tail -n3 "$work/gen.err")"
  fi
fi

log "build and vet"
go vet -tags cuda ./ops/cuda/...
go test -tags cuda -c -o "$work/cuda.test" ./ops/cuda
log "built in $((SECONDS - t0)) s"

log "parity tests"
(cd ops/cuda && timeout 240 "$work/cuda.test" -test.count=1 -test.v -test.run '.' -test.timeout 230s) | tee "$work/test.log" |
  grep -E '^(=== RUN|--- |PASS|FAIL|ok)|rel err|no GPU' || true
if grep -q 'Error in initialization' "$work/test.log" || grep -q -- '--- SKIP' "$work/test.log"; then
  die "no GPU answered: $(grep -m1 -E 'Error in initialization|--- SKIP|no GPU' "$work/test.log")"
fi
grep -q '^PASS' "$work/test.log" || die "parity tests failed (full log above)"

log "device tests: models and trainer on --device cuda against cpu"
for pkg in models trainer cmd/wkd; do
  bin="$work/$(basename "$pkg").test"
  go test -tags cuda -c -o "$bin" "./$pkg"
  (cd "$pkg" && timeout 120 "$bin" -test.count=1 -test.v -test.run 'Device' -test.timeout 110s) |
    tee "$bin.log" | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|worst|synchronizer calls|differs' || true
  grep -q -- '--- SKIP' "$bin.log" && die "$pkg device tests skipped: $(grep -m1 -- '--- SKIP' "$bin.log")"
  grep -q '^PASS' "$bin.log" || die "$pkg device tests failed (log above)"
done
log "device tests passed at $((SECONDS - t0)) s"

log "benchmark: wkd-cuda"
(cd ops/cuda && timeout 180 "$work/cuda.test" -test.run '^$' -test.bench 'DistillStep' -test.benchtime 10x -test.v) \
  >"$work/bench.log" 2>&1 || { cat "$work/bench.log" >&2; die "benchmark failed"; }
cat "$work/bench.log" >&2
wkd1="$(awk '/^BenchmarkDistillStep\/batch=1/ { for (i = 1; i < NF; i++) if ($(i+1) == "median-ms") print $i }' "$work/bench.log")"
wkd4="$(awk '/^BenchmarkDistillStep\/batch=4/ { for (i = 1; i < NF; i++) if ($(i+1) == "median-ms") print $i }' "$work/bench.log")"
[ -n "$wkd1" ] && [ -n "$wkd4" ] || die "benchmark printed no median-ms (see above)"

log "benchmark: PyTorch"
cat >"$work/step.py" <<'PY'
# The same distillation step as ops/cuda/step_bench_test.go, in PyTorch on the GPU.
import statistics, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False  # strict FP32, like cuBLAS SGEMM on the wkd side
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


def resnet(ngf):
    m = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
    for i in range(2):
        k = 2 ** i
        m += [nn.Conv2d(ngf * k, ngf * k * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * k * 2), nn.ReLU(True)]
    m += [ResBlock(ngf * 4) for _ in range(9)]
    for i in range(2):
        k = 2 ** (2 - i)
        m += [nn.ConvTranspose2d(ngf * k, ngf * k // 2, 3, 2, 1, 1), nn.InstanceNorm2d(ngf * k // 2), nn.ReLU(True)]
    m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
    return nn.Sequential(*m)


def patchgan(ndf):
    m, prev = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], ndf
    for i, s in enumerate([2, 2, 1]):
        nxt = ndf * min(2 ** (i + 1), 8)
        m += [nn.Conv2d(prev, nxt, 4, s, 1), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, True)]
        prev = nxt
    return nn.Sequential(*m, nn.Conv2d(prev, 1, 4, 1, 1))


def init(net):
    for p in net.modules():
        if isinstance(p, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(p.weight, 0, 0.02)
            nn.init.zeros_(p.bias)
    return net.to(dev)


def haar(x):  # one level, even sides: ll and (N, C, 3, H/2, W/2) high bands
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    return (a + b + c + d) / 2, torch.stack(((a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2), 2)


def wkd(s, t, levels=3):
    loss = 0
    for _ in range(levels):
        s, hs = haar(s)
        t, ht = haar(t)
        loss = loss + F.l1_loss(hs, ht)
    return loss


def run(n, steps=10, warm=2):
    torch.manual_seed(0)
    T, G, D = init(resnet(64)), init(resnet(16)), init(patchgan(64))
    T.requires_grad_(False)
    oG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(n, 3, 256, 256, device=dev) * 2 - 1
    real = x.clone()

    def step():
        with torch.no_grad():
            t = T(x)
        fake = G(x)
        D.requires_grad_(True)
        oD.zero_grad(set_to_none=False)
        pr, pf = D(real), D(fake.detach())
        (0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))).backward()
        oD.step()
        D.requires_grad_(False)
        oG.zero_grad(set_to_none=False)
        pf = D(fake)
        (F.mse_loss(pf, torch.ones_like(pf)) + 0.4 * wkd(fake, t)).backward()
        oG.step()

    for _ in range(warm):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


print("torch", torch.__version__, torch.cuda.get_device_name(0), file=sys.stderr)
for n in (1, 4):
    print(f"torch batch={n} median_ms={run(n):.3f}")
PY
timeout 180 "$py" "$work/step.py" >"$work/torch.log" || die "PyTorch step failed (is torch built with CUDA? set PYTHON)"
cat "$work/torch.log"
t1="$(sed -n 's/^torch batch=1 median_ms=//p' "$work/torch.log")"
t4="$(sed -n 's/^torch batch=4 median_ms=//p' "$work/torch.log")"
[ -n "$t1" ] && [ -n "$t4" ] || die "PyTorch printed no medians"

# Throughput ratios: torch time / wkd time (above 1: wkd is faster).
echo "wkd-cuda batch=1 median_ms=$wkd1  torch batch=1 median_ms=$t1  ratio_b1: $(awk -v w="$wkd1" -v t="$t1" 'BEGIN { printf "%.3f", t / w }')"
echo "wkd-cuda batch=4 median_ms=$wkd4  torch batch=4 median_ms=$t4"
log "done in $((SECONDS - t0)) s"
echo "ratio: $(awk -v w="$wkd4" -v t="$t4" 'BEGIN { printf "%.3f", t / w }')"
