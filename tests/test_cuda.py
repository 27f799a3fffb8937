"""The CUDA paths: SDPA with unequal query/value widths on its memory-efficient
kernel, the chunked route, fp16 training with detectron2's AMPTrainer, and
SyncBN with activation checkpointing under DDP.

Skipped where no GPU is visible. DANET_REQUIRE_CUDA=N (``make gpu-check`` sets
1) makes fewer than N visible GPUs a failure instead: no GPU fails the module,
and from N = 2 on fewer than N fails only the DDP test, which needs 2 GPUs and
is skipped on one unless DANET_REQUIRE_CUDA is 2 or more. Each test prints its
time and peak CUDA memory (run with ``-s``: ``make gpu-check`` does).
"""
import copy
import itertools
import os
import re
import time

import pytest
import torch

REQUIRED_GPUS = int(os.environ.get("DANET_REQUIRE_CUDA") or 0)
VISIBLE_GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
if VISIBLE_GPUS < 1:  # requiring 2 or more GPUs fails the DDP test only, below
    if REQUIRED_GPUS:
        pytest.fail(f"DANET_REQUIRE_CUDA={REQUIRED_GPUS} but {VISIBLE_GPUS} CUDA devices are visible", pytrace=False)
    pytest.skip("no CUDA device (DANET_REQUIRE_CUDA=1 makes this a failure)", allow_module_level=True)

from detectron2.engine import AMPTrainer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from helpers import last_metrics, relative_error, tiny_cfg, train_net  # noqa: E402
from test_attention_impls import assert_gradients_close, forward_backward  # noqa: E402

from danet.errors import InputError  # noqa: E402
from danet.modeling import PositionAttention  # noqa: E402
from danet.modeling import attention as attention_module  # noqa: E402
from danet.modeling.memory_saving import HEAD_PARTS  # noqa: E402

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def report(request):
    """Print the test's time and its peak CUDA memory in this process; a test
    whose work runs in subprocesses puts its own figure in ``report["memory"]``."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    figures = {}
    yield figures
    torch.cuda.synchronize()
    memory = figures.get("memory", f"peak {(torch.cuda.max_memory_allocated() - base) / 2**20:.0f} MB above its start")
    print(f"\n[gpu-check] {request.node.name}: {time.perf_counter() - start:.2f} s, {memory}")


def assert_matches_naive(layer, x, tolerance):
    """Output and gradients of ``layer`` on ``x`` against the naive route in float64."""
    reference = copy.deepcopy(layer).double()
    reference.impl = "naive"
    grad = torch.randn_like(x)
    out, grads = forward_backward(layer, x, grad)
    expected, expected_grads = forward_backward(reference, x.double(), grad.double())
    assert relative_error(out, expected) <= tolerance
    assert_gradients_close(grads, expected_grads, tolerance)


def position_layer(impl, channels=128, dtype=torch.float32):
    torch.manual_seed(0)
    layer = PositionAttention(channels, impl=impl)  # keys of channels / 8: unequal widths
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    return layer.to(CUDA, dtype)


@pytest.mark.parametrize("impl", ["sdpa", "chunked"])
def test_efficient_routes_match_float64_naive(impl):
    assert_matches_naive(position_layer(impl), torch.randn(2, 128, 24, 40, device=CUDA), 1e-4)


def test_sdpa_with_unequal_widths_takes_a_memory_efficient_kernel():
    """fp32 and fp16 queries/keys of 64 channels, values of 512, as the R50/R101
    heads have them: the check passes, so no log line and no chunked route, and
    forward+backward over N = 16384 positions stay far below the 1 GiB of one
    N x N float32 matrix (the math kernel holds several)."""
    num = 128 * 128
    for dtype in (torch.float32, torch.float16):
        inputs = [torch.randn(1, 1, num, width, device=CUDA, dtype=dtype) for width in (64, 64, 512)]
        assert attention_module.memory_efficient_sdpa_accepts(*inputs), dtype
    layer = position_layer("sdpa", channels=512)
    x = torch.randn(1, 512, 128, 128, device=CUDA)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    forward_backward(layer, x, torch.randn_like(x))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 0.5 * num * num * 4, f"{peak / 2**20:.0f} MB: the N x N matrix was materialised"


def test_float64_takes_the_chunked_route_under_auto_and_is_refused_under_sdpa():
    """CUDA's memory-efficient kernels have no float64: "auto" computes the
    chunked route (exactly), an explicit "sdpa" is refused in one line."""
    x = torch.randn(1, 128, 12, 20, device=CUDA, dtype=torch.float64)
    assert_matches_naive(position_layer("auto", dtype=torch.float64), x, 1e-10)
    with pytest.raises(InputError, match="MODEL.DANET.ATTENTION_IMPL is 'sdpa'"):
        position_layer("sdpa", dtype=torch.float64)(x)


def gpu_cfg(*opts):
    return tiny_cfg("MODEL.DEVICE", "cuda", "MODEL.DANET.AUX.ENABLED", True, "MODEL.DANET.DROPOUT", 0.0, *opts)


def training_batch(size=(64, 96)):
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (3, *size), generator=generator, dtype=torch.uint8),
            "sem_seg": torch.randint(0, 19, size, generator=generator),
        }
        for _ in range(2)
    ]


@pytest.mark.parametrize("impl", ["auto", "chunked", "naive"])
def test_amp_trainer_trains_in_fp16(impl):
    """detectron2's AMPTrainer (SOLVER.AMP.ENABLED) on the tiny DANet: every
    loss finite (AMPTrainer raises otherwise), the first step's losses near
    float32's, the weights updated and kept in float32."""
    torch.manual_seed(0)
    model = build_model(gpu_cfg("MODEL.DANET.ATTENTION_IMPL", impl))
    for module in model.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.5)
    batch = training_batch()
    with torch.no_grad():
        float32_losses = {name: loss.item() for name, loss in model(batch).items()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = AMPTrainer(model, itertools.repeat(batch), optimizer, precision=torch.float16)
    with EventStorage(0) as storage:
        for trainer.iter in range(3):
            trainer.run_step()
            storage.iter += 1
        history = storage.histories()
        first = {name: history[name].values()[0][0] for name in history if name.startswith("loss_")}
    assert first.keys() == float32_losses.keys()
    for name, loss in float32_losses.items():
        assert abs(first[name] - loss) <= 2e-2 * abs(loss), (name, first[name], loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert len(changed) > 0.9 * len(before)


def logged_max_memory(run):
    """detectron2's metric printer's last "max_mem: <N>M" of a train_net run."""
    found = re.findall(r"max_mem: (\d+)M", run.stdout + run.stderr)
    return f"max_mem {found[-1]} MB per process (train_net's log)" if found else "max_mem not logged"


def test_sync_bn_with_activation_checkpointing_under_ddp(toy_cityscapes, tmp_path, report):
    """Two processes with NCCL, SyncBN and every part checkpointed train to the
    weights and BN statistics of the same run without checkpointing: the
    recompute's SyncBN all-reduces pair up, and statistics are updated once.
    The tolerance is float32 on GPU, whose reductions are not deterministic; a
    second BN update per step would move the statistics by about 10%."""
    if VISIBLE_GPUS < max(REQUIRED_GPUS, 2):
        if REQUIRED_GPUS >= 2:
            pytest.fail(f"DANET_REQUIRE_CUDA={REQUIRED_GPUS} but only {VISIBLE_GPUS} CUDA device(s) visible")
        pytest.skip("needs 2 GPUs (DANET_REQUIRE_CUDA=2 makes this a failure)")
    opts = ["SOLVER.MAX_ITER", "3", "SEED", "3", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cuda",
            "MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN", "MODEL.DANET.DROPOUT", "0.0"]  # fmt: skip
    states, memory = {}, []
    for saving in ("False", "True"):
        output_dir = tmp_path / saving
        parts = str(list(HEAD_PARTS)) if saving == "True" else "[]"
        run = train_net(toy_cityscapes["datasets"], output_dir, *opts, "MODEL.DANET.MEMORY_SAVING", saving,
                        "MODEL.DANET.MEMORY_SAVING_CHECKPOINT", parts, flags=["--num-gpus", "2", "--dist-url", "auto"])  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert last_metrics(output_dir)["iteration"] == 2
        states[saving] = torch.load(output_dir / "model_final.pth", weights_only=False)["model"]
        memory.append(f"MEMORY_SAVING {saving}: {logged_max_memory(run)}")
    report["memory"] = "; ".join(memory)
    assert states["False"].keys() == states["True"].keys()
    for name, expected in states["False"].items():
        actual = states["True"][name]
        if expected.is_floating_point():
            torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-4, msg=name)
        else:
            assert torch.equal(actual, expected), name
