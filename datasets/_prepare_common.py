"""What every datasets/prepare_*.py script shares: the default root under
$DETECTRON2_DATASETS, one-line errors, atomic writes, skipping what is up to
date, and the parallel conversion loop with its summary and exit status."""
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image
from tqdm import tqdm


def default_root(*parts):
    """``$DETECTRON2_DATASETS/<parts>``, else ``./datasets/<parts>`` (detectron2's convention)."""
    return os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), *parts)


def add_common_arguments(parser, root_help):
    parser.add_argument("--root", default=None, help=root_help)
    parser.add_argument("--force", action="store_true", help="convert even the files that are up to date")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes (default: all cores)")


def require_dirs(root, *folders, how):
    """Exit with one line naming the first of ``root`` and ``root/<folder>`` that is missing."""
    if not os.path.isdir(root):
        sys.exit(f"error: dataset root {root!r} does not exist; {how}")
    for folder in folders:
        path = os.path.join(root, folder)
        if not os.path.isdir(path):
            sys.exit(f"error: {root!r} has no {folder}/ folder (expected {path}); {how}")


def read_id_list(path, how):
    """The ids of a split file (one a line), or exit naming it."""
    if not os.path.isfile(path):
        sys.exit(f"error: split file {path} does not exist; {how}")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def write_id_list(ids, path):
    def write(tmp):
        with open(tmp, "w") as f:
            f.writelines(f"{i}\n" for i in ids)

    write_atomically(path, write)


def is_up_to_date(source, output):
    return os.path.isfile(output) and os.path.isfile(source) and os.path.getmtime(output) >= os.path.getmtime(source)


def write_atomically(output, write):
    """``write(tmp)`` then rename to ``output``: an interrupted run never leaves
    a half-written file that would look up to date."""
    os.makedirs(os.path.dirname(output), exist_ok=True)
    root, ext = os.path.splitext(output)
    tmp = f"{root}.tmp{ext}"  # the extension tells Pillow the format
    try:
        write(tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_label(label, output):
    """Save a [H, W] uint8 id map as a single-channel PNG, atomically."""
    write_atomically(output, lambda tmp: Image.fromarray(np.asarray(label, dtype=np.uint8)).save(tmp))


def read_label(path):
    """The ids of a single-channel or palette PNG ([H, W] array)."""
    with Image.open(path) as label:
        if label.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"a {label.mode} picture, expected one channel of ids")
        return np.asarray(label)


def lookup_table(source_ids, size=256):
    """A table mapping ``source_ids[k]`` to ``k`` and every other value to 255."""
    table = np.full(size, 255, np.uint8)
    table[list(source_ids)] = np.arange(len(source_ids))
    return table


def check_ids(label, valid, path_hint=""):
    """Raise naming the values of ``label`` that are not in ``valid``."""
    bad = np.setdiff1d(np.unique(label), valid)
    if bad.size:
        raise ValueError(f"unexpected label values {bad[:5].tolist()}{path_hint}")


def _call(job):
    convert, (source, output) = job
    try:
        convert(source, output)
        return source, None
    except (Exception, SystemExit) as e:  # any broken file is reported, the others go on
        return source, f"{type(e).__name__}: {e}".strip()


def run_conversions(jobs, convert, force=False, workers=None, what=""):
    """Run ``convert(source, output)`` for each (source, output) pair of
    ``jobs`` whose output is older than its source (all with ``force``), on
    ``workers`` processes with a progress bar; print a one-line summary and
    return the exit status (1 if anything failed).

    ``convert`` must be a module-level function (it is pickled to the workers).
    """
    todo = list(jobs) if force else [job for job in jobs if not is_up_to_date(*job)]
    skipped = len(jobs) - len(todo)
    failed = []
    with Pool(max(1, workers or os.cpu_count())) as pool:
        results = pool.imap_unordered(_call, [(convert, job) for job in todo], chunksize=8)
        for source, error in tqdm(results, total=len(todo), unit="file"):
            if error:
                failed.append(source)
                tqdm.write(f"failed: {source}: {error}", file=sys.stderr)
    print(f"{what}: converted {len(todo) - len(failed)}, skipped {skipped} (up to date), failed {len(failed)}")
    return 1 if failed else 0
