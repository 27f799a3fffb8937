"""Memory of this process on CPU, read from /proc/self/status.

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
