# pytorch_wavelets' DWTForward(J, 'haar', mode='zero') and DWTInverse built another way, as an
# independent reference for wkd's Haar DWT: one strided conv2d per level with the four 2x2
# filters made from pywt's haar bank (dec_lo = (s, s), dec_hi = (-s, s)) as pytorch_wavelets'
# afb2d_nonsep makes them, zero padding at the end of odd sides, and conv_transpose2d with the
# reconstruction bank for the inverse. dwt_separable takes the separable route (rows, then
# columns, as AFB2D runs); both must agree.
# dwt(x, J) -> (ll, [highs_1, ..., highs_J]), highs_j: (N, C, 3, H_j, W_j), bands LH, HL, HH.
import math
import torch.nn.functional as F
s = 1 / math.sqrt(2)
dec_lo, dec_hi = torch.tensor([s, s]), torch.tensor([-s, s])
rec_lo, rec_hi = dec_lo.flip(0), dec_hi.flip(0)

def bank(lo, hi):
    # filter rows index H, columns W; bands (LL, LH, HL, HH) = (col filter) x (row filter)
    return torch.stack([torch.outer(lo, lo), torch.outer(hi, lo), torch.outer(lo, hi), torch.outer(hi, hi)])[:, None]

A = bank(dec_lo, dec_hi).flip(-1).flip(-2)  # conv2d correlates: mirror the analysis filters
S = bank(rec_lo, rec_hi)                    # conv_transpose2d convolves

def dwt(x, J):
    C, highs = x.shape[1], []
    for _ in range(J):
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        y = F.conv2d(x, A.repeat(C, 1, 1, 1), stride=2, groups=C)
        y = y.reshape(y.shape[0], C, 4, y.shape[-2], y.shape[-1])
        x = y[:, :, 0]
        highs.append(y[:, :, 1:])
    return x, highs

def dwt_separable(x, J):
    C, highs = x.shape[1], []
    lo, hi = dec_lo.flip(0), dec_hi.flip(0)
    for _ in range(J):
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        r = F.conv2d(x, torch.stack([lo, hi])[:, None, None, :].repeat(C, 1, 1, 1), stride=(1, 2), groups=C)
        y = F.conv2d(r, torch.stack([lo, hi])[:, None, :, None].repeat(2 * C, 1, 1, 1), stride=(2, 1), groups=2 * C)
        y = y.reshape(y.shape[0], C, 4, y.shape[-2], y.shape[-1])
        x = y[:, :, 0]
        highs.append(y[:, :, 1:])
    return x, highs

def idwt(ll, highs):
    for h in reversed(highs):
        ll = ll[..., :h.shape[-2], :h.shape[-1]]
        C = ll.shape[1]
        y = torch.cat([ll[:, :, None], h], 2).reshape(ll.shape[0], 4 * C, h.shape[-2], h.shape[-1])
        ll = F.conv_transpose2d(y, S.repeat(C, 1, 1, 1), stride=2, groups=C)
    return ll
