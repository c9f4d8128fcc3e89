"""AMT-S (Li et al., CVPR 2023), the frame interpolator behind VBench's motion smoothness.

No maintained library ships AMT, so the network is written here with the parameter names of the
published ``amt-s.pth`` (``networks/AMT-S.py`` of the AMT code VBench vendors), so that its
``state_dict`` loads strictly. ``AMTS()(img0, img1, embt)`` takes frames in ``[0, 1]``, ``[B, 3, H, W]``
with H and W multiples of 16, and returns the frame at time ``embt`` (VBench: 0.5) in ``[0, 1]``.

Structure: a RAFT-style feature encoder builds a bidirectional all-pairs correlation volume at 1/8
resolution; an IFRNet-style pyramid encoder/decoder estimates the flows from the middle frame to
both inputs coarse to fine (1/16 -> 1/8 -> 1/4 -> 1/2 -> 1), each level refined by a correlation
lookup; the last decoder predicts three flow pairs, blend masks and residuals, merged into one frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = (20, 32, 44, 56)  # pyramid encoder widths at 1/2, 1/4, 1/8, 1/16
SKIP = 20  # channels a ResBlock convolves on their own
NUM_FLOWS = 3  # flow pairs of the last decoder
CORR_RADIUS, CORR_LEVELS = 3, 4
FEAT_DIM = 84  # correlation feature width


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp ``image [B, C, H, W]`` by ``flow [B, 2, H, W]`` (pixels), border padding."""
    b, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, -1, h, -1)
    ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, -1, -1, w)
    grid = torch.cat([xs, ys], 1).to(image)
    flow = torch.cat([flow[:, :1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    grid = (grid + flow).permute(0, 2, 3, 1)  # [B, H, W, 2]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def conv_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.PReLU(cout))


# --- correlation features (RAFT's small encoder, instance norm) --------------------------------------


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with instance norms and a strided 1x1 shortcut when downsampling."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        mid = cout // 4
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.norm1, self.norm2, self.norm3 = nn.InstanceNorm2d(mid), nn.InstanceNorm2d(mid), nn.InstanceNorm2d(cout)
        self.downsample = (
            None if stride == 1 else nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.InstanceNorm2d(cout))
        )

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class SmallEncoder(nn.Module):
    """Features at 1/8 resolution for the correlation volume; both frames go through as one batch."""

    def __init__(self, out_dim: int = FEAT_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(32)
        self.layer1 = nn.Sequential(Bottleneck(32, 32), Bottleneck(32, 32))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, 2), Bottleneck(64, 64))
        self.layer3 = nn.Sequential(Bottleneck(64, 96, 2), Bottleneck(96, 96))
        self.conv2 = nn.Conv2d(96, out_dim, 1)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class BidirCorrelation:
    """All-pairs correlation of two feature maps, pooled into a pyramid, looked up around coordinates.

    ``corr[b, y1, x1, y2, x2] = <f0(y1, x1), f1(y2, x2)> / sqrt(C)``; the reverse direction is its
    transpose. A lookup samples a ``(2r+1)^2`` window per level (bilinear, zero outside).
    """

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor, levels: int = CORR_LEVELS, radius: int = CORR_RADIUS):
        self.radius = radius
        b, c, h, w = fmap0.shape
        corr = torch.matmul(fmap0.view(b, c, h * w).transpose(1, 2), fmap1.view(b, c, h * w))
        corr = corr.view(b, h, w, 1, h, w) / torch.sqrt(torch.tensor(c).float())
        corr_t = corr.permute(0, 4, 5, 3, 1, 2).reshape(b * h * w, 1, h, w)  # [B*H*W (frame 1), 1, H, W (frame 0)]
        corr = corr.reshape(b * h * w, 1, h, w)  # [B*H*W (frame 0), 1, H, W (frame 1)]
        self.pyramid, self.pyramid_t = [corr], [corr_t]
        for _ in range(levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))
            self.pyramid_t.append(F.avg_pool2d(self.pyramid_t[-1], 2, stride=2))

    @staticmethod
    def _sample(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        h, w = volume.shape[-2:]
        x, y = coords.split([1, 1], dim=-1)
        grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
        return F.grid_sample(volume, grid, align_corners=True)

    def __call__(self, coords0: torch.Tensor, coords1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.radius
        coords0, coords1 = coords0.permute(0, 2, 3, 1), coords1.permute(0, 2, 3, 1)  # [B, H, W, 2] as (x, y)
        b, h, w, _ = coords0.shape
        steps = torch.linspace(-r, r, 2 * r + 1, device=coords0.device)
        # the window's first axis offsets x and its second y, as RAFT lays it out
        delta = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        out, out_t = [], []
        for level, (volume, volume_t) in enumerate(zip(self.pyramid, self.pyramid_t)):
            window0 = coords0.reshape(b * h * w, 1, 1, 2) / 2**level + delta
            window1 = coords1.reshape(b * h * w, 1, 1, 2) / 2**level + delta
            out.append(self._sample(volume, window0).view(b, h, w, -1))
            out_t.append(self._sample(volume_t, window1).view(b, h, w, -1))
        return (
            torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float(),
            torch.cat(out_t, dim=-1).permute(0, 3, 1, 2).contiguous().float(),
        )


def coords_grid(b: int, h: int, w: int, device) -> torch.Tensor:
    """Pixel coordinates ``[B, 2, H, W]``, channel 0 x and channel 1 y."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=0).float()[None].repeat(b, 1, 1, 1)


class UpdateBlock(nn.Module):
    """Residual update of the decoder features and both flows from the correlation lookup."""

    def __init__(self, cdim: int, scale: int | None, hidden: int = 76, flow_dim: int = 20, corr_dim: int = 64):
        super().__init__()
        planes = 2 * CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.scale_factor = scale
        self.convc1 = nn.Conv2d(planes, corr_dim, 1)
        self.convf1 = nn.Conv2d(4, flow_dim * 2, 7, padding=3)
        self.convf2 = nn.Conv2d(flow_dim * 2, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, 68, 3, padding=1)
        lrelu = nn.LeakyReLU(0.1)
        self.gru = nn.Sequential(
            nn.Conv2d(68 + 4 + cdim, hidden, 3, padding=1), lrelu, nn.Conv2d(hidden, hidden, 3, padding=1)
        )
        self.feat_head = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1), lrelu, nn.Conv2d(hidden, cdim, 3, padding=1)
        )
        self.flow_head = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1), lrelu, nn.Conv2d(hidden, 4, 3, padding=1)
        )

    def forward(self, feat, flow, corr):
        if self.scale_factor is not None:  # work at the correlation's 1/8 resolution
            feat = resize(feat, 1 / self.scale_factor)
        cor = F.leaky_relu(self.convc1(corr), 0.1)
        flo = F.leaky_relu(self.convf2(F.leaky_relu(self.convf1(flow), 0.1)), 0.1)
        x = F.leaky_relu(self.conv(torch.cat([cor, flo], dim=1)), 0.1)
        out = self.gru(torch.cat([x, flow, feat], dim=1))
        delta_feat, delta_flow = self.feat_head(out), self.flow_head(out)
        if self.scale_factor is not None:
            delta_feat = resize(delta_feat, self.scale_factor)
            delta_flow = self.scale_factor * resize(delta_flow, self.scale_factor)
        return delta_feat, delta_flow


# --- the pyramid (IFRNet's encoder and decoders) ---------------------------------------------------


class ResBlock(nn.Module):
    """Five 3x3 convolutions; the second and fourth act on the last ``side`` channels alone."""

    def __init__(self, ch: int, side: int):
        super().__init__()
        self.side = side
        self.conv1, self.conv3 = conv_prelu(ch, ch), conv_prelu(ch, ch)
        self.conv2, self.conv4 = conv_prelu(side, side), conv_prelu(side, side)
        self.conv5 = nn.Conv2d(ch, ch, 3, padding=1)
        self.prelu = nn.PReLU(ch)

    def forward(self, x):
        out = self.conv1(x)
        out = self.conv3(torch.cat([out[:, : -self.side], self.conv2(out[:, -self.side :])], 1))
        out = self.conv5(torch.cat([out[:, : -self.side], self.conv4(out[:, -self.side :])], 1))
        return self.prelu(x + out)


class Encoder(nn.Module):
    """Four stride-2 levels: features at 1/2, 1/4, 1/8 and 1/16."""

    def __init__(self, channels=CHANNELS):
        super().__init__()
        for i, (cin, cout) in enumerate(zip((3, *channels[:-1]), channels), 1):
            self.add_module(f"pyramid{i}", nn.Sequential(conv_prelu(cin, cout, 3, 2, 1), conv_prelu(cout, cout)))

    def forward(self, x):
        feats = []
        for i in range(len(CHANNELS)):
            x = getattr(self, f"pyramid{i + 1}")(x)
            feats.append(x)
        return feats


def decoder_block(cin: int, ch: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_prelu(cin, ch), ResBlock(ch, SKIP), nn.ConvTranspose2d(ch, cout, 4, 2, 1))


class InitDecoder(nn.Module):
    """The coarsest level: flows and features at 1/8 from both 1/16 features and the time."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblock = decoder_block(2 * cin + 1, 2 * cin, cout + 4)

    def forward(self, f0, f1, embt):
        b, _, h, w = f0.shape
        out = self.convblock(torch.cat([f0, f1, embt.expand(b, 1, h, w)], 1))
        return out[:, :2], out[:, 2:4], out[:, 4:]


class IntermediateDecoder(nn.Module):
    """One level finer: features warped by the current flows, flows refined and doubled in size."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblock = decoder_block(3 * cin + 4, 3 * cin, cout + 4)

    def forward(self, feat, f0, f1, flow0, flow1):
        out = self.convblock(torch.cat([feat, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        return out[:, :2] + 2.0 * resize(flow0, 2.0), out[:, 2:4] + 2.0 * resize(flow1, 2.0), out[:, 4:]


class MultiFlowDecoder(nn.Module):
    """Full resolution: ``NUM_FLOWS`` flow pairs, blend masks (sigmoid) and residual images."""

    def __init__(self, cin: int, num_flows: int = NUM_FLOWS):
        super().__init__()
        self.num_flows = num_flows
        self.convblock = decoder_block(3 * cin + 4, 3 * cin, 8 * num_flows)

    def forward(self, feat, f0, f1, flow0, flow1):
        n = self.num_flows
        out = self.convblock(torch.cat([feat, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        delta0, delta1, mask, residual = torch.split(out, [2 * n, 2 * n, n, 3 * n], 1)
        flow0 = delta0 + 2.0 * resize(flow0, 2.0).repeat(1, n, 1, 1)
        flow1 = delta1 + 2.0 * resize(flow1, 2.0).repeat(1, n, 1, 1)
        return flow0, flow1, torch.sigmoid(mask), residual


def combine_flows(comb_block, img0, img1, flow0, flow1, mask, residual, mean) -> torch.Tensor:
    """Warp both frames by each flow pair, blend by mask, add residual and mean; average plus a learnt correction."""
    b, c, h, w = flow0.shape
    n = c // 2
    flow0, flow1 = flow0.reshape(b * n, 2, h, w), flow1.reshape(b * n, 2, h, w)
    mask, residual = mask.reshape(b * n, 1, h, w), residual.reshape(b * n, 3, h, w)
    img0 = torch.stack([img0] * n, 1).reshape(-1, 3, h, w)
    img1 = torch.stack([img1] * n, 1).reshape(-1, 3, h, w)
    mean = torch.stack([mean] * n, 1).reshape(-1, 1, 1, 1)
    warps = (mask * warp(img0, flow0) + (1 - mask) * warp(img1, flow1) + mean + residual).reshape(b, n, 3, h, w)
    return warps.mean(1) + comb_block(warps.view(b, -1, h, w))


class AMTS(nn.Module):
    """AMT-S: ``forward(img0, img1, embt, scale_factor)`` -> the frame at time ``embt``, ``[B, 3, H, W]`` in [0, 1]."""

    def __init__(self):
        super().__init__()
        c = CHANNELS
        self.feat_encoder = SmallEncoder()
        self.encoder = Encoder(c)
        self.decoder4 = InitDecoder(c[3], c[2])
        self.decoder3 = IntermediateDecoder(c[2], c[1])
        self.decoder2 = IntermediateDecoder(c[1], c[0])
        self.decoder1 = MultiFlowDecoder(c[0])
        self.update4, self.update3, self.update2 = UpdateBlock(c[2], None), UpdateBlock(c[1], 2), UpdateBlock(c[0], 4)
        n = NUM_FLOWS
        self.comb_block = nn.Sequential(nn.Conv2d(3 * n, 6 * n, 3, 1, 1), nn.PReLU(6 * n), nn.Conv2d(6 * n, 3, 3, 1, 1))

    @staticmethod
    def _lookup(corr_fn, coord, flow0, flow1, embt, downsample: int):
        """Correlation around where the middle frame's pixels land in each input, scaled linearly to t = 0 <-> 1."""
        if downsample != 1:
            flow0 = resize(flow0, 1 / downsample) / downsample
            flow1 = resize(flow1, 1 / downsample) / downsample
        corr0, corr1 = corr_fn(coord + flow1 * (1.0 / embt), coord + flow0 * (1.0 / (1.0 - embt)))
        return torch.cat([corr0, corr1], dim=1), torch.cat([flow0, flow1], dim=1)

    def _refine(self, update, corr_fn, coord, flow0, flow1, feat, embt, downsample):
        corr, flow = self._lookup(corr_fn, coord, flow0, flow1, embt, downsample)
        delta_feat, delta_flow = update(feat, flow, corr)
        return flow0 + delta_flow[:, :2], flow1 + delta_flow[:, 2:], feat + delta_feat

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, embt: torch.Tensor, scale_factor: float = 1.0):
        mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean, img1 - mean
        in0 = resize(img0, scale_factor) if scale_factor != 1.0 else img0
        in1 = resize(img1, scale_factor) if scale_factor != 1.0 else img1
        b, _, h, w = in0.shape
        coord = coords_grid(b, h // 8, w // 8, img0.device)
        fmap0, fmap1 = self.feat_encoder(torch.cat([in0, in1], 0)).split([b, b], 0)  # [B, 84, H/8, W/8] each
        corr_fn = BidirCorrelation(fmap0, fmap1)
        f0_1, f0_2, f0_3, f0_4 = self.encoder(in0)
        f1_1, f1_2, f1_3, f1_4 = self.encoder(in1)

        flow0, flow1, feat = self.decoder4(f0_4, f1_4, embt)  # 1/8
        flow0, flow1, feat = self._refine(self.update4, corr_fn, coord, flow0, flow1, feat, embt, 1)
        flow0, flow1, feat = self.decoder3(feat, f0_3, f1_3, flow0, flow1)  # 1/4
        flow0, flow1, feat = self._refine(self.update3, corr_fn, coord, flow0, flow1, feat, embt, 2)
        flow0, flow1, feat = self.decoder2(feat, f0_2, f1_2, flow0, flow1)  # 1/2
        flow0, flow1, feat = self._refine(self.update2, corr_fn, coord, flow0, flow1, feat, embt, 4)
        flow0, flow1, mask, residual = self.decoder1(feat, f0_1, f1_1, flow0, flow1)  # full resolution
        if scale_factor != 1.0:
            flow0 = resize(flow0, 1.0 / scale_factor) * (1.0 / scale_factor)
            flow1 = resize(flow1, 1.0 / scale_factor) * (1.0 / scale_factor)
            mask, residual = resize(mask, 1.0 / scale_factor), resize(residual, 1.0 / scale_factor)
        return torch.clamp(combine_flows(self.comb_block, img0, img1, flow0, flow1, mask, residual, mean), 0, 1)


# --- VBench's use of it (vbench/motion_smoothness.py) ------------------------------------------------

ANCHOR_RESOLUTION, ANCHOR_MEMORY, ANCHOR_MEMORY_BIAS = 1024 * 512, 1500 * 1024**2, 2500 * 1024**2


def vbench_scale(height: int, width: int, memory: int | None = None) -> float:
    """The working scale VBench picks for a ``height x width`` video on a GPU of ``memory`` bytes (None: CPU, 1).

    ``scale = anchor / (H W) * sqrt((memory - bias) / anchor_memory)``, at most 1, then snapped to
    ``16 / floor(16 / sqrt(scale))``; on current GPUs this is 1 below several megapixels.
    """
    if memory is None:
        return 1.0
    scale = min(1.0, ANCHOR_RESOLUTION / (height * width) * math.sqrt((memory - ANCHOR_MEMORY_BIAS) / ANCHOR_MEMORY))
    return 1 / math.floor(1 / math.sqrt(scale) * 16) * 16


def padding(height: int, width: int, scale: float) -> tuple[list[int], int, int]:
    """AMT's ``InputPadder`` for a working scale: ``F.pad`` widths (left, right, top, bottom) to a multiple of
    ``int(16 / scale)``, split evenly with the odd pixel last, and the padded height and width."""
    divisor = int(16 / scale)
    ph, pw = (
        ((height // divisor + 1) * divisor - height) % divisor,
        ((width // divisor + 1) * divisor - width) % divisor,
    )
    return [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], height + ph, width + pw


def usable(height: int, width: int, scale: float = 1.0) -> bool:
    """Whether AMT-S gives numbers for this frame size: its coarsest correlation level must be 2 px or more
    (``padded * scale >= 128``); below that it divides by zero and returns NaNs, in VBench too."""
    _, h, w = padding(height, width, scale)
    return min(int(h * scale), int(w * scale)) >= 128


@torch.inference_mode()
def interpolate_midpoint(model: nn.Module, frame0: np.ndarray, frame1: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The frame halfway between two RGB uint8 frames ``[H, W, 3]``, as VBench obtains it from AMT.

    Frames go to ``[0, 1]``, are padded (replicate) to a multiple of ``16 / scale`` split evenly with
    the odd pixel last, interpolated at ``t = 0.5``, unpadded, and mapped back by AMT's ``tensor2img``:
    ``x * 255`` clipped to 0..255 and truncated to uint8.
    """
    device = next(model.parameters()).device
    h, w = frame0.shape[:2]
    pad, _, _ = padding(h, w, scale)
    pw, ph = pad[0], pad[2]
    # each frame as AMT's img2tensor makes it ([1, 3, H, W] over HWC memory), so the convolutions see
    # the same memory layout as in VBench and round the same way
    in0, in1 = (
        F.pad(
            (torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).unsqueeze(0) / 255.0).to(device),
            pad,
            mode="replicate",
        )
        for f in (frame0, frame1)
    )
    embt = torch.full((1, 1, 1, 1), 0.5, device=device)
    mid = model(in0, in1, embt, scale_factor=scale)[0, :, ph : ph + h, pw : pw + w]
    return (mid * 255.0).permute(1, 2, 0).cpu().numpy().clip(0, 255).astype(np.uint8)
