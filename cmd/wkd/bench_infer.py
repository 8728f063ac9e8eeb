# The PyTorch side of `wkd bench-infer`: generator inference (eval mode, no autograd) on the
# CPU, timed. It runs after the reference networks (ResGen, UGen from internal/torchnets/nets.py).
import json
import sys
import time

import torch

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)


def build(net):
    if net["kind"] == "resnet":
        return ResGen(3, 3, net["ngf"], "instance", False, 9)
    return UGen(3, 3, 8, net["ngf"], "batch", True)


out = {"times": {}, "torch": torch.__version__, "threads": torch.get_num_threads()}
for net in args["nets"]:
    g = build(net).eval()
    for batch in args["batches"]:
        x = torch.rand(batch, 3, args["size"], args["size"]) * 2 - 1
        times = []
        with torch.no_grad():
            for _ in range(args["warmup"]):
                g(x)
            start = time.perf_counter()
            # As the Go side: --reps forwards, more until --min-time has passed, at most 100.
            while len(times) < args["reps"] or (time.perf_counter() - start < args["min_time"] and len(times) < 100):
                t0 = time.perf_counter()
                g(x)
                times.append(time.perf_counter() - t0)
        out["times"][f'{net["name"]}/{batch}'] = times
print(json.dumps(out))
