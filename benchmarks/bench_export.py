#!/usr/bin/env python
"""Seconds per image and peak memory of the PyTorch model against its ONNX
Runtime and TorchScript exports, on CPU.

    python benchmarks/bench_export.py --sizes 512x1024,1024x2048

The model is built from the config with random weights (MODEL.WEIGHTS "", no
download) and BN in place of SyncBN; it is exported once per format
(tools/export_model.py's defaults: ONNX with naive attention, TorchScript with
SDPA). Backends:

  eager        the PyTorch segmentor (MODEL.DANET.ATTENTION_IMPL auto: chunked on CPU)
  onnx         ONNX Runtime, the whole image at once
  onnx-window  ONNX Runtime window by window (--window, --stride), the bounded-memory route
  torchscript  TorchScript, the whole image at once

Each case runs in a fresh process: median of --iters timed images after
--warmup (one more for TorchScript, whose profiling executor optimises the
graph on its second call). Peak memory is the process's VmHWM minus its RSS after loading the
model. A case whose resident memory passes --max-memory-gb (or what the machine
has available, less 1.5 GB) is stopped and reported as such.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.memory import peak_rss_bytes, rss_bytes  # noqa: E402

BACKENDS = ("eager", "onnx", "onnx-window", "torchscript")
BENCH_OPTS = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]


def load_cfg(args):
    from danet.config import load_config

    return load_config(args.config_file, BENCH_OPTS + args.opts)


def export(args, work_dir):
    """Export both formats (seeded random weights) in this process."""
    import torch

    from danet.export import export_model

    cfg = load_cfg(args)
    for fmt in ("onnx", "torchscript"):
        torch.manual_seed(0)
        export_model(cfg, fmt, os.path.join(work_dir, fmt), size=(256, 512), random_weights=True)


def measure(args, backend, size, work_dir):
    """Run one case in this (fresh) process: seconds per image, peak MB."""
    import torch

    from danet.export import ExportedModel, segment_image

    height, width = size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if backend == "eager":
        from detectron2.modeling import build_model

        torch.manual_seed(0)
        model = build_model(load_cfg(args)).eval()
        chw = torch.from_numpy(image.transpose(2, 0, 1).copy())

        def run():
            with torch.no_grad():
                model([{"image": chw}])

    else:
        fmt = "torchscript" if backend == "torchscript" else "onnx"
        exported = ExportedModel(os.path.join(work_dir, fmt, "model.onnx" if fmt == "onnx" else "model.ts"))
        exported.metadata["test_size"] = {"min": 0, "max": 0}  # the image as given, no resize
        window = tuple(args.window) if backend == "onnx-window" else None
        stride = tuple(args.stride) if backend == "onnx-window" else None

        def run():
            segment_image(exported, image, window, stride)

    base = rss_bytes()
    times = []
    # TorchScript's profiling executor optimises the graph on its second call.
    warmup = args.warmup + (backend == "torchscript")
    for i in range(warmup + args.iters):
        start = time.perf_counter()
        run()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"s_per_image": sorted(times)[len(times) // 2], "peak_mb": (peak_rss_bytes() - base) / 2**20}


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def resident_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def run_case(args, backend, size, work_dir):
    """The case in a child process, stopped if its RSS passes the memory cap."""
    cap = min(args.max_memory_gb * 2**30, available_bytes() - 1.5 * 2**30)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", backend, "--child-size", f"{size[0]}x{size[1]}",
           "--work-dir", work_dir] + sys.argv[1:]  # fmt: skip
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, resident_bytes(proc.pid))
            if peak > cap:
                proc.kill()
                proc.wait()
                return {"stopped": f"resident memory passed the cap of {cap / 2**30:.1f} GB"}
            time.sleep(0.1)
        out.seek(0)
        lines = out.read().strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"stopped": f"failed with exit status {proc.returncode}"}
    return json.loads(lines[-1])


def parse_size(text):
    height, width = text.split("x")
    return int(height), int(width)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config-file", default="configs/r50.yaml")
    parser.add_argument("--sizes", default="512x1024,1024x2048", help="HxW of the images, comma-separated")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--window", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--stride", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=1, help="timed images (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-memory-gb", type=float, default=12.0)
    parser.add_argument("--output", default="output/bench_export.json")
    parser.add_argument("--work-dir", help="where the exports go (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-size", help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args()
    if args.child == "export":
        export(args, args.work_dir)
        return
    if args.child:
        print(json.dumps(measure(args, args.child, parse_size(args.child_size), args.work_dir)))
        return
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"--backends: unknown {sorted(unknown)}; choose from {', '.join(BACKENDS)}")

    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or tmp
        if any(b != "eager" for b in backends):
            # In its own process too: tracing holds memory that would stay in this one.
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "export", "--work-dir", work_dir]
            subprocess.run(cmd + sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"{args.config_file}, random weights, CPU, {os.cpu_count()} cores; window {args.window} stride {args.stride}")
        print(f"{'size':>10} {'backend':>12} {'s/image':>9} {'peak MB':>9}")
        results = []
        for size in sizes:
            for backend in backends:
                result = run_case(args, backend, size, work_dir)
                results.append({"size": list(size), "backend": backend, **result})
                figures = result.get("stopped") or f"{result['s_per_image']:9.2f} {result['peak_mb']:9.0f}"
                print(f"{size[0]}x{size[1]:<5} {backend:>12} {figures}", flush=True)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if not k.startswith("child")}, "results": results}, f, indent=2)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
