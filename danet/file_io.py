"""Files written so that a reader never sees half of one."""
import os


def write_atomically(path, mode, write):
    """Write ``path`` through ``write(file)`` into a temporary file beside it,
    flushed to disk, then renamed over ``path``: a process killed meanwhile, or
    a ``write`` that raises, leaves the previous file (or none) whole, and
    processes writing the same path at once do not mix their bytes."""
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp_path, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
