"""What the command-line scripts share (``demo.py`` and ``tools/``): their
argument conventions, their input and output checks and the loop over images.

It sits beside :mod:`danet.errors`, whose ``exit_on_input_error`` every script
wraps its work in, rather than in :mod:`danet.engine`: the scripts that use it
belong to every concern (prediction, export, visualisation) and some build no
model at all.

Conventions, as detectron2's own scripts have them:

- ``--config-file FILE`` and config overrides as trailing ``KEY VALUE`` pairs
  (as ``train_net.py``), or after ``--opts`` (as detectron2's ``demo.py``).
  After an option that takes many values (``--input a.png b.png``) trailing
  pairs need ``--`` first, since they would otherwise be taken as inputs.
- ``--input`` takes image files, folders (their images) and glob patterns;
  ``--output`` is a folder, created when missing.

Bad arguments raise :class:`~danet.errors.InputError` naming the option.
"""
import argparse
import glob
import os
import re
import sys

import torch
from PIL import Image
from tqdm import tqdm

from detectron2.data.detection_utils import read_image

from .config import load_config
from .data.datasets.loaders import IMAGE_EXTENSIONS
from .errors import InputError, MissingInputError
from .visualization import NO_PREDICTION, blend_with_legend

# MODEL.WEIGHTS, TEST.AUG.ENABLED: what a config key looks like, and an input file name rarely does.
_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")


def add_config_arguments(parser):
    """Add ``--config-file FILE`` and the config overrides (trailing pairs and
    ``--opts``) to an argparse parser; :func:`parse_args` joins the overrides."""
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--opts", dest="flag_opts", default=[], nargs=argparse.REMAINDER,
                        help="config overrides: the KEY VALUE pairs after it, as in detectron2's demo")  # fmt: skip
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides at the end of the command, as in train_net.py; after `--` "
                        "when they follow an option of many values (--input a.png b.png -- KEY VALUE)")  # fmt: skip


def add_image_arguments(parser, output_help):
    """Add ``--input`` (many files, folders or globs) and ``--output`` (a folder)."""
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files, folders (their images) or glob patterns")  # fmt: skip
    parser.add_argument("--output", required=True, metavar="DIR", help=output_help)


def add_prediction_arguments(parser):
    """Add ``--confidence-threshold`` and ``--opacity``, the options of
    :func:`predict_train_ids` and :func:`save_prediction`, both in [0, 1]."""
    parser.add_argument("--confidence-threshold", type=_fraction, default=0.0, metavar="T",
                        help="pixels whose top class probability is below T are written as 255 (default 0: none)")
    parser.add_argument("--opacity", type=_fraction, default=0.5, help="opacity of the class colours (default 0.5)")


def _fraction(text):
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def parse_args(parser, argv=None):
    """``parser.parse_args(argv)`` with ``args.opts`` holding every config
    override: the trailing pairs, then those after ``--opts``."""
    args = parser.parse_args(argv)
    if hasattr(args, "flag_opts"):
        trailing = list(args.opts)
        if trailing[:1] == ["--"]:
            trailing = trailing[1:]
        # "... KEY VALUE --opts KEY VALUE": the trailing pairs took --opts and what follows it.
        if "--opts" in trailing:
            at = trailing.index("--opts")
            trailing = trailing[:at] + trailing[at + 1 :]
        # As in detectron2's scripts, the trailing pairs take everything after them: an option
        # there would be read as a config key (no config key or value starts with "--").
        misplaced = [token for token in trailing if token.startswith("--")]
        if misplaced:
            parser.error(f"{misplaced[0]} follows the config overrides: give options before the KEY VALUE pairs")
        args.opts = trailing + list(args.flag_opts)
        del args.flag_opts
    return args


def config_from_args(args):
    """The config of ``--config-file`` with the overrides of :func:`parse_args`."""
    return load_config(args.config_file, args.opts)


def list_inputs(patterns):
    """Files named directly or matched by a glob, and the images inside
    folders. Raises an InputError naming a pattern that matches nothing, and
    files that would write the same outputs."""
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = [
                os.path.join(pattern, name)
                for name in sorted(os.listdir(pattern))
                if name.lower().endswith(IMAGE_EXTENSIONS)
            ]
        else:
            found = sorted(glob.glob(os.path.expanduser(pattern)))
        if not found and _CONFIG_KEY.fullmatch(pattern):
            raise InputError(
                f"--input {pattern!r} looks like a config key: --input takes many values, so put config "
                "overrides after `--` (--input a.png -- KEY VALUE) or after --opts"
            )
        if not found:
            raise MissingInputError(
                f"--input {pattern!r}: no such file, no images in that folder, or nothing matches"
            )
        paths.extend(found)
    stems = {}
    for path in paths:
        stems.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    clashes = [paths for paths in stems.values() if len(paths) > 1]
    if clashes:
        raise InputError(f"--input: these files would write the same outputs; run them separately: {clashes[0]}")
    return paths


def output_folder(path, option="--output"):
    """Create the folder ``path`` if missing and return it; an InputError
    naming ``option`` when it is a file or cannot be created. Call it before
    the model is built, so a bad folder fails before the work."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{option} {path!r} is a file: give a folder (it is created when missing)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option} {path!r}: cannot create the folder ({e.strerror}): give another folder") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path!r}: the folder is not writable: give another folder")
    return path


def predict_train_ids(logits, confidence_threshold=0.0):
    """[K, H, W] logits -> uint8 train ids [H, W], NO_PREDICTION where the top
    softmax probability is below the threshold."""
    train_ids = logits.argmax(dim=0)
    if confidence_threshold > 0:
        confidence = logits.softmax(dim=0).max(dim=0).values
        train_ids[confidence < confidence_threshold] = NO_PREDICTION
    return train_ids.to(torch.uint8).cpu().numpy()


def save_prediction(output_dir, path, image, train_ids, names, colors, opacity):
    """Write ``<stem>_pred.png`` (the train ids) and ``<stem>_vis.png`` (the
    image blended with the class colours, with a legend) of the image at
    ``path`` into ``output_dir``; returns the path stem for further pictures."""
    stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
    Image.fromarray(train_ids).save(stem + "_pred.png")
    Image.fromarray(blend_with_legend(image, train_ids, names, colors, opacity)).save(stem + "_vis.png")
    return stem


def for_each_image(paths, process, desc):
    """``process(path, rgb_image)`` for each image, with a progress bar. An
    unreadable file, or one ``process`` rejects with an InputError, is reported
    and skipped. Returns the exit status: 1 if any image failed (they are
    listed), else 0."""
    failed = []
    for path in tqdm(paths, desc=desc, unit="image"):
        try:
            image = read_image(path, format="RGB")
        except Exception as e:  # any unreadable file: report it and go on
            tqdm.write(f"Skipped {path}: not a readable image ({e})", file=sys.stderr)
            failed.append(path)
            continue
        try:
            process(path, image)
        except InputError as e:
            tqdm.write(f"Skipped {path}: {e}", file=sys.stderr)
            failed.append(path)
    if failed:
        tqdm.write(f"{len(failed)} of {len(paths)} inputs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
