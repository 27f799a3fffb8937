#!/usr/bin/env python
"""How far PIL's bilinear resize (detectron2's ``ResizeTransform`` on uint8
images, antialiased when shrinking) is from OpenCV's (mmcv's, and this
project's ``danet.data.resize.resize_image``), in grey levels (0..255) per value.

    python benchmarks/interpolation_gap.py                      # sample photo + generated 1/f image
    python benchmarks/interpolation_gap.py --images 'leftImg8bit/val/*/*.png' --limit 20 --scales 0.5 1.7

For each scale: the mean absolute difference over every pixel and channel,
its 99th percentile and the share of values more than 2 levels apart, averaged
over the images, and the largest per-image mean; also ``F.interpolate`` (bilinear, no antialiasing: the float
route of the former test-time resize) against OpenCV. Nothing is timed.
"""
import argparse
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from detectron2.data import transforms as T  # noqa: E402

from danet.data.resize import rescale_size, resize_image  # noqa: E402


def pink_noise_image(size=(512, 1024), seed=0):
    """An RGB image with the 1/f amplitude spectrum of natural images."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size[0])[:, None]
    fx = np.fft.rfftfreq(size[1])[None]
    amplitude = 1 / np.maximum(np.hypot(fy, fx), 1 / max(size))
    channels = []
    for _ in range(3):
        spectrum = amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape))
        field = np.fft.irfft2(spectrum, s=size)
        channels.append((field - field.mean()) / field.std())
    return np.clip(127.5 + 45 * np.stack(channels, -1), 0, 255).astype(np.uint8)


def sample_images(patterns, limit):
    if patterns:
        paths = sorted(p for pattern in patterns for p in glob.glob(pattern))[:limit]
        if not paths:
            sys.exit(f"--images {' '.join(patterns)}: no file matches")
        return [(os.path.basename(p), np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = np.asarray(Image.open(f).convert("RGB"))
    return [("grace_hopper.jpg (matplotlib sample)", photo), ("1/f noise 512x1024 (generated)", pink_noise_image())]


def gaps(a, b):
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return diff.mean(), np.percentile(diff, 99), (diff > 2).mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="*", help="image files or globs (default: a sample photo and a generated image)")
    parser.add_argument("--limit", type=int, default=50, help="at most this many images")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.7, 2049 / 2048])
    args = parser.parse_args(argv)
    images = sample_images(args.images, args.limit)
    print(f"{len(images)} images: " + ", ".join(name for name, _ in images))
    print(f"{'scale':>8} {'pair':>24} {'mean |diff|':>12} {'worst image':>12} {'p99':>6} {'> 2 levels':>11}")
    for scale in args.scales:
        rows = {"PIL vs OpenCV": [], "F.interpolate vs OpenCV": []}
        for _, image in images:
            height, width = image.shape[:2]
            size = rescale_size(height, width, scale)
            opencv = resize_image(image, size)
            pil = T.ResizeTransform(height, width, *size).apply_image(image)
            tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
            interpolated = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0]
            rows["PIL vs OpenCV"].append(gaps(pil, opencv))
            rows["F.interpolate vs OpenCV"].append(gaps(interpolated.permute(1, 2, 0).numpy(), opencv))
        for pair, values in rows.items():
            mean, p99, share = np.mean(values, axis=0)
            worst = max(v[0] for v in values)
            print(f"{scale:8.4f} {pair:>24} {mean:12.3f} {worst:12.3f} {p99:6.1f} {share:10.2%}")


if __name__ == "__main__":
    main()
