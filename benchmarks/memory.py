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
