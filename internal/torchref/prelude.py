# Loaded before every reference script: reads the inputs the Go test wrote (safetensors, float32)
# into the dict I of torch tensors, runs the script, which fills the dict O, and writes O back.
import json
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)
torch.manual_seed(0)


def _load(path):
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8 : 8 + n])
    data = b[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype="<f4").reshape(e["shape"]).copy()
        out[name] = torch.from_numpy(arr)
    return out


def _save(path, tensors):
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, (float, int)):
            t = torch.tensor(float(t))
        a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4")
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for raw in blobs:
            f.write(raw)


I = _load(sys.argv[1])
O = {}
with open(sys.argv[3]) as _f:
    exec(compile(_f.read(), "reference", "exec"))
_save(sys.argv[2], O)
