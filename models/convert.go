package models

// ConvertScript is a Python program that converts a pytorch-CycleGAN-and-pix2pix checkpoint
// (a .pth state_dict such as latest_net_G_A.pth) into a safetensors file Load reads. It needs
// only torch (and numpy, which torch brings), not the safetensors package:
//
//	python3 convert.py latest_net_G_A.pth latest_net_G_A.safetensors
//
// It drops BatchNorm's num_batches_tracked counters, the InstanceNorm running statistics that
// checkpoints from PyTorch < 0.4 carry (the reference drops them too), and a DataParallel
// "module." prefix, and stores everything as float32.
const ConvertScript = `import json
import struct
import sys

import torch

sd = torch.load(sys.argv[1], map_location="cpu")
out = {}
for k, v in sd.items():
    if k.startswith("module."):
        k = k[len("module."):]
    if k.endswith("num_batches_tracked"):
        continue
    if k.endswith(("running_mean", "running_var")) and k.rsplit(".", 1)[0] + ".weight" not in sd:
        continue
    out[k] = v.detach().to(torch.float32).contiguous().numpy().astype("<f4")
header, off = {}, 0
for k in sorted(out):
    header[k] = {"dtype": "F32", "shape": list(out[k].shape), "data_offsets": [off, off + out[k].nbytes]}
    off += out[k].nbytes
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for k in sorted(out):
        f.write(out[k].tobytes())
print("wrote %d tensors to %s" % (len(out), sys.argv[2]))
`
