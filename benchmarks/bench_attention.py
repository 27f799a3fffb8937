#!/usr/bin/env python
"""Forward+backward time and peak memory of DANet's position attention layer
(PositionAttention, C channels), naive against the memory-efficient routes.

    python benchmarks/bench_attention.py                      # all sizes, batch 1 and 2
    python benchmarks/bench_attention.py --sizes 96x96 --batches 1 --rounds 5

Peak memory: each case runs one forward+backward in a fresh subprocess; on CPU
its peak RSS (VmHWM, see benchmarks/memory.py) minus its RSS after imports, a tiny warm-up call
and input creation; on CUDA ``torch.cuda.max_memory_allocated`` minus the
memory allocated before the call. Time: all impls of a case in one process,
in turn each round, median over rounds. Cases that would materialise N x N
matrices larger than the free memory are reported as not measured.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet.modeling.attention import PositionAttention  # noqa: E402
from benchmarks.memory import check_device, peak_rss_bytes, rss_bytes  # noqa: E402

# "sdpa_heads" is measured only here: SDPA with the value split into Cv/Ck heads
# of the query/key width, the queries and keys repeated for every head.
IMPLS = ("naive", "chunked", "sdpa", "sdpa_heads")


def sdpa_heads(query, key, value):
    batch, num, key_channels = query.shape
    heads = value.shape[-1] // key_channels
    grouped_value = value.reshape(batch, num, heads, key_channels).transpose(1, 2)
    out = F.scaled_dot_product_attention(
        query.unsqueeze(1).expand(-1, heads, -1, -1).contiguous(),
        key.unsqueeze(1).expand(-1, heads, -1, -1).contiguous(),
        grouped_value.contiguous(),
        scale=1.0,
    )
    return out.transpose(1, 2).reshape(batch, num, heads * key_channels)


class HeadsPositionAttention(PositionAttention):
    """PositionAttention computed with ``sdpa_heads``."""

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = [conv(x).flatten(2).transpose(1, 2) for conv in (self.query, self.key, self.value)]
        return self.gamma * sdpa_heads(*tokens).transpose(1, 2).reshape(b, c, h, w) + x


def build_layer(impl, channels, device):
    layer = HeadsPositionAttention(channels) if impl == "sdpa_heads" else PositionAttention(channels, impl=impl)
    with torch.no_grad():
        layer.gamma.fill_(0.5)
    return layer.to(device)


def fresh_input(batch, channels, height, width, device):
    x = torch.randn(batch, channels, height, width, device=device, requires_grad=True)
    return x, torch.randn_like(x)


def train_step(layer, x, grad):
    layer.zero_grad(set_to_none=True)
    x.grad = None
    layer(x).backward(grad)
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(impl, height, width, batch, channels, device):
    """Peak memory of one forward+backward; meant to run in a fresh process."""
    torch.manual_seed(0)
    layer = build_layer(impl, channels, device)
    # A tiny call first, so the baseline includes the BLAS / oneDNN code it loads.
    train_step(layer, *fresh_input(batch, channels, 4, 4, device))
    x, grad = fresh_input(batch, channels, height, width, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    train_step(layer, x, grad)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = peak_rss_bytes() - base
    return peak / 2**20


def median_times(impls, height, width, batch, channels, rounds, device):
    """Seconds per forward+backward for each impl, run in turn each round so
    that load from other processes hits them alike; the median over rounds
    after one warm-up round."""
    torch.manual_seed(0)
    layers = {impl: build_layer(impl, channels, device) for impl in impls}
    x, grad = fresh_input(batch, channels, height, width, device)
    times = {impl: [] for impl in impls}
    for _ in range(rounds + 1):
        for impl, layer in layers.items():
            start = time.perf_counter()
            train_step(layer, x, grad)
            times[impl].append(time.perf_counter() - start)
    return {impl: sorted(t[1:])[rounds // 2] for impl, t in times.items()}


def available_bytes(device):
    if device.type == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def materialised_bytes(impl, height, width, batch):
    """About three float32 [B, N, N] matrices per head at the peak of a form that
    materialises them (scores and probabilities in forward, their gradients in
    backward); 0 for the fused forms."""
    heads = {"naive": 1, "sdpa_heads": 8}.get(impl, 0)
    num = height * width
    return 3 * heads * batch * num * num * 4


def peak_memory_in_subprocess(args, impl, height, width, batch):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--child", impl,
        "--sizes", f"{height}x{width}", "--batches", str(batch),
        "--channels", str(args.channels), "--device", args.device,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
    return float(proc.stdout.strip().splitlines()[-1])


def parse_size(text):
    height, width = text.lower().split("x")
    return int(height), int(width)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="64x64,96x96,128x256", help="feature map HxW list")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--impls", default="naive,chunked,sdpa", help=f"from {IMPLS}")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after a warm-up (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default="output/bench_attention.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_device(parser, args.device)
    device = torch.device(args.device)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    if args.child:
        print(peak_memory_mb(args.child, *sizes[0], batches[0], args.channels, device))
        return

    hardware = describe_hardware(device)
    print(f"Position attention, C={args.channels}, forward+backward, {hardware}")
    print(f"{'HxW':>8} {'N':>6} {'B':>2} {'impl':>10} {'time s':>8} {'peak MB':>9} {'time/naive':>10} {'mem/naive':>9}")
    results = []
    for height, width in sizes:
        for batch in batches:
            case = dict(height=height, width=width, batch=batch, channels=args.channels)
            rows, runnable = {}, []
            for impl in args.impls.split(","):
                needs = materialised_bytes(impl, height, width, batch)
                if needs > 0.8 * available_bytes(device):
                    rows[impl] = dict(case, impl=impl, skipped=f"needs about {needs / 2**30:.0f} GB")
                    continue
                peak = peak_memory_in_subprocess(args, impl, height, width, batch)
                rows[impl] = dict(case, impl=impl, peak_mb=peak)
                runnable.append(impl)
            times = median_times(runnable, height, width, batch, args.channels, args.rounds, device)
            for impl, time_s in times.items():
                rows[impl]["time_s"] = time_s
            naive = rows.get("naive")
            for row in rows.values():
                if naive is not None and "time_s" in row and "time_s" in naive:
                    row["time_vs_naive"] = row["time_s"] / naive["time_s"]
                    row["memory_vs_naive"] = row["peak_mb"] / naive["peak_mb"]
                print(format_row(row), flush=True)
                results.append(row)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"hardware": hardware, "device": args.device, "results": results}, f, indent=2)
    print(f"Wrote {args.output}")


def format_row(row):
    size = f"{row['height']}x{row['width']}"
    line = f"{size:>8} {row['height'] * row['width']:>6} {row['batch']:>2} {row['impl']:>10}"
    if "skipped" in row:
        return f"{line} not measured: {row['skipped']}"
    line += f" {row['time_s']:8.3f} {row['peak_mb']:9.1f}"
    if "time_vs_naive" in row:
        line += f" {row['time_vs_naive']:10.2f} {row['memory_vs_naive']:9.3f}"
    return line


def describe_hardware(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {torch.get_num_threads()} CPU threads"


if __name__ == "__main__":
    main()
