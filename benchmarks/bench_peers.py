#!/usr/bin/env python
"""This project's DANet (memory savings off and on) against mmsegmentation's
DANet built from its own config: training step and inference, time and peak
memory, the same inputs, one fresh process per case.

    python benchmarks/bench_peers.py      # every case: 26 min on 2 CPU cores
    python benchmarks/bench_peers.py --depths 50 --train-sizes 512x1024 --infer-sizes ""
    python benchmarks/bench_peers.py --train-sizes 512x1024 --infer-sizes "" --rounds 3

Cases: for each depth (R50, R101), a training step (forward, backward, SGD
step) at each --train-sizes crop with --batch images, and inference on one
image of each --infer-sizes. Models have random weights and BN (one process,
no SyncBN). Ours is configs/base.yaml shaped like mmseg's DANet (ResNetV1c's
32-32-64 deep stem, the FCN auxiliary head on res4 with weight 0.4): "ours"
without savings, "ours_saving" with MODEL.DANET.MEMORY_SAVING True and, with
--impls, "ours_every_part" with every checkpointable part (inference is the
same model, so only "ours" runs it). mmseg's is
configs/danet/danet_r{depth}-d8_4xb2-40k_cityscapes-{size}.py from its wheel,
imported from --reference-dir (``make reference``) with
tests/reference/mmcv_ops.py standing in for mmcv's compiled ops; its whole-image
inference (the 512x1024 config's test mode).

Time is the median of --iters timed steps after --warmup steps. Peak memory on
CPU is the process's peak RSS (VmHWM) minus its RSS once model and inputs
exist: activations, gradients and optimizer state, not the weights; on CUDA,
torch.cuda.max_memory_allocated minus the memory allocated then. Prints a
table with the ratios to mmseg (with --rounds, the median over rounds of the
ratio within a round: on a shared machine one step can vary by 30% from one
spell to the next) and writes JSON (--output).
"""
import argparse
import json
import os
import resource
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks.memory import check_device, median_time, memory_baseline, peak_bytes_above  # noqa: E402
from danet.modeling.memory_saving import CHECKPOINT_PARTS  # noqa: E402

IMPLS = ("ours", "ours_saving", "mmseg")
# Not run by default: every checkpointable part, the head branches too (MEMORY_SAVING_CHECKPOINT).
EVERY_PART = "ours_every_part"
# configs/base.yaml with the architecture of mmseg's DANet (its Base-DANet config's model keys).
OURS_AS_MMSEG = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
    "MODEL.DANET.AUX.ENABLED", "True", "MODEL.DANET.AUX.LOSS_WEIGHT", "0.4",
    "MODEL.WEIGHTS", "", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN",
]  # fmt: skip
MMSEG_CROPS = {(512, 1024): "512x1024", (769, 769): "769x769"}


def parse_sizes(text):
    return [tuple(int(v) for v in size.split("x")) for size in text.split(",") if size]


class Ours:
    def __init__(self, depth, saving, device, checkpoint=()):
        from detectron2.modeling import build_model

        from danet.config import load_config

        cfg = load_config(os.path.join(REPO, "configs", "base.yaml"), OURS_AS_MMSEG + [
            "MODEL.RESNETS.DEPTH", str(depth), "MODEL.DEVICE", device, "MODEL.DANET.MEMORY_SAVING", str(saving),
            "MODEL.DANET.MEMORY_SAVING_CHECKPOINT", str(list(checkpoint)),
        ])  # fmt: skip
        self.model = build_model(cfg)  # with the MEMORY_SAVING* parts of cfg

    def inputs(self, images, labels):
        return [{"image": image, "sem_seg": label} for image, label in zip(images, labels)]

    def train_loss(self, inputs):
        return sum(self.model(inputs).values())

    def infer(self, inputs):
        return self.model(inputs)


class Mmseg:
    def __init__(self, depth, crop, device, reference_dir):
        sys.path.insert(0, reference_dir)
        sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
        import mmcv_ops

        sys.modules["mmcv.ops"] = mmcv_ops
        import mmseg
        import mmseg.models  # noqa: F401  (registers mmseg's models)
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS

        init_default_scope("mmseg")
        name = f"danet_r{depth}-d8_4xb2-40k_cityscapes-{MMSEG_CROPS.get(crop, '512x1024')}.py"
        cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", "danet", name))
        cfg.model.pretrained = None
        for part in (cfg.model.backbone, cfg.model.decode_head, cfg.model.auxiliary_head):
            part.norm_cfg = dict(type="BN", requires_grad=True)
        self.model = MODELS.build(cfg.model).to(device)

    def inputs(self, images, labels):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample

        mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
        std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
        samples = []
        for image, label in zip(images, labels):
            shape = tuple(image.shape[-2:])
            sample = SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
            sample.gt_sem_seg = PixelData(data=label[None])
            samples.append(sample)
        return torch.stack([(image.float() - mean) / std for image in images]), samples

    def train_loss(self, inputs):
        losses = self.model.loss(*inputs)
        return sum(value for key, value in losses.items() if "loss" in key)

    def infer(self, inputs):
        return self.model.predict(*inputs)


def training_step(runner, inputs):
    """One SGD step (momentum, so its state counts in the peak) on ``inputs``."""
    optimizer = torch.optim.SGD(runner.model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        runner.train_loss(inputs).backward()
        optimizer.step()

    return step


def measure(args, impl, depth, mode, size):
    """One case, in this (fresh) process."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    if impl == "mmseg":
        runner = Mmseg(depth, size, args.device, args.reference_dir)
    else:
        every_part = CHECKPOINT_PARTS if impl == EVERY_PART else ()
        runner = Ours(depth, impl == "ours_saving", args.device, checkpoint=every_part)
    batch = args.batch if mode == "train" else 1
    images = [torch.randint(0, 256, (3, *size), dtype=torch.uint8) for _ in range(batch)]
    labels = [torch.randint(0, 19, size) for _ in range(batch)]
    inputs = runner.inputs(images, labels)
    model = runner.model
    train_step = training_step(runner, inputs)
    base = memory_baseline(device)

    def inference_step():
        with torch.no_grad():
            runner.infer(inputs)

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    if mode == "train":
        model.train()
        seconds = median_time(train_step, args.warmup, args.iters, device)
    else:
        model.eval()
        seconds = median_time(inference_step, args.warmup, args.iters, device)
    # Pages the process touched for the first time: on CPU, glibc gives every freed
    # tensor above 32 MB back to the system, so a recompute faults its pages in again.
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (args.warmup + args.iters)
    return {"seconds": seconds, "peak_gb": peak_bytes_above(base, device) / 2**30, "page_faults_per_step": faults}


def cases(args):
    for depth in args.depths:
        for mode, sizes in (("train", args.train_sizes), ("inference", args.infer_sizes)):
            for size in sizes:
                for impl in args.impls:
                    if not (mode == "inference" and impl.startswith("ours_")):
                        yield impl, depth, mode, size


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--depths", default="50,101", type=lambda s: [int(d) for d in s.split(",")])
    parser.add_argument("--train-sizes", default="512x1024,769x769", type=parse_sizes, help="HxW,...")
    parser.add_argument("--infer-sizes", default="1024x2048", type=parse_sizes, help="HxW,...")
    parser.add_argument("--batch", type=int, default=2, help="training images per step")
    parser.add_argument("--impls", default=",".join(IMPLS), type=lambda s: s.split(","),
                        help=f"any of {', '.join(IMPLS + (EVERY_PART,))}")
    parser.add_argument("--iters", type=int, default=1, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every case this many times, one round after another, so that a slow\n"
                             "spell of the machine falls on all implementations alike")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reference-dir", default=os.path.join(REPO, ".reference"),
                        help="where `make reference` installed mmsegmentation")  # fmt: skip
    parser.add_argument("--output", default="output/bench_peers.json")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_device(parser, args.device)
    unknown = set(args.impls) - set(IMPLS + (EVERY_PART,))
    if unknown:
        parser.error(f"--impls: unknown {sorted(unknown)}; choose from {', '.join(IMPLS + (EVERY_PART,))}")
    if args.case:
        impl, depth, mode, size = json.loads(args.case)
        print(json.dumps(measure(args, impl, depth, mode, tuple(size))))
        return

    print(f"{args.device}, batch {args.batch} in training, 1 image in inference")
    print(f"{'model':>6} {'mode':>9} {'size':>9} {'impl':>15} {'seconds':>8} {'peak GB':>8} "
          f"{'faults/step':>11} {'load':>5}")  # fmt: skip
    results = []
    for round_index, (impl, depth, mode, size) in ((r, case) for r in range(args.rounds) for case in cases(args)):
        case = json.dumps([impl, depth, mode, size])
        done = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--case", case],
                              capture_output=True, text=True)  # fmt: skip
        result = {"impl": impl, "depth": depth, "mode": mode, "size": "x".join(map(str, size)),
                  "round": round_index, "load_average": float(load_average())}  # fmt: skip
        if done.returncode:
            result["error"] = (done.stderr.strip().splitlines() or ["killed"])[-1]
            print(f"R{depth:<5} {mode:>9} {result['size']:>9} {impl:>15} failed: {result['error']}")
        else:
            result.update(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"R{depth:<5} {mode:>9} {result['size']:>9} {impl:>15} {result['seconds']:8.2f} "
                  f"{result['peak_gb']:8.2f} {result['page_faults_per_step']:11.3g} {result['load_average']:5.1f}")  # fmt: skip
        results.append(result)
        write(args, results)
    print_ratios(results)
    print(f"Wrote {args.output}")


def print_ratios(results):
    """Each of ours against mmseg in the same case: the median over rounds of
    the ratio within a round."""
    by_case = {(r["depth"], r["mode"], r["size"], r["impl"], r["round"]): r for r in results if "error" not in r}
    ratios = {}
    for (depth, mode, size, impl, round_index), result in by_case.items():
        peer = by_case.get((depth, mode, size, "mmseg", round_index))
        if impl != "mmseg" and peer:
            ratio = (result["seconds"] / peer["seconds"], result["peak_gb"] / peer["peak_gb"])
            ratios.setdefault((depth, mode, size, impl), []).append(ratio)
    for (depth, mode, size, impl), values in ratios.items():
        times, memories = sorted(t for t, _ in values), sorted(m for _, m in values)
        rounds = ", ".join(f"{t:.2f}" for t, _ in values)
        print(f"R{depth} {mode} {size} {impl} / mmseg: time {times[len(times) // 2]:.2f}x (rounds: {rounds}), "
              f"peak memory {memories[len(memories) // 2]:.2f}x")  # fmt: skip


def write(args, results):
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "case"}
    with open(args.output, "w") as f:
        json.dump({"settings": settings, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
