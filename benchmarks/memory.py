"""Measuring a benchmark step: memory of this process on CPU, read from
/proc/self/status, or CUDA's allocator statistics; the median time of a step.

The peak is VmHWM, the high-water mark of this process's own address space:
unlike ``ru_maxrss``, it never includes the RSS its parent had when it was
forked, so a benchmark's fresh subprocess measures only itself.
"""


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_bytes():
    return _status_bytes("VmRSS")


def peak_rss_bytes():
    return _status_bytes("VmHWM")


def saved_activation_bytes(model, step):
    """Bytes of the tensors autograd keeps for the backward while ``step()``
    runs a forward: each storage once, parameters not counted. Exact and
    independent of the allocator and of other processes."""
    import torch

    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(tensor):
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in storages:
            storages.add(storage.data_ptr())
            total += storage.nbytes()
        # Not ``tensor`` itself: a saved output holding its own grad_fn is a
        # reference cycle in C++ that would keep the whole graph alive.
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return total


def memory_baseline(device):
    """What the peak is measured from: the RSS now on CPU; on CUDA the memory
    allocated now, with the peak statistics reset."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return rss_bytes()


def peak_bytes_above(baseline, device):
    import torch

    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else peak_rss_bytes()
    return peak - baseline


def median_time(step, warmup, iters, device):
    """Median seconds of ``iters`` calls of ``step`` after ``warmup`` calls,
    waiting for the GPU before and after each."""
    import time

    import torch

    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def check_device(parser, device):
    """End with argparse's usage error when ``device`` (a --device value) is
    CUDA and no GPU is visible, before any case starts."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: no CUDA device is visible here; run on a machine with a GPU or give --device cpu")
