# The PyTorch side of `wkd bench-inception`: FID Inception-v3 features at 299x299 on the CPU,
# timed. It runs after internal/torchnets/inception.py (fid_inception, randomize,
# fid_features).
import json
import sys
import time

import torch

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
net = randomize(fid_inception(), 1)
x = torch.rand(args["batch"], 3, args["size"], args["size"])
for _ in range(args["warmup"]):
    fid_features(net, x)
times = []
for _ in range(args["reps"]):
    t0 = time.perf_counter()
    fid_features(net, x)
    times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))
