"""A checkpointer that reads published checkpoints in their own layout, fails
loudly on weights that do not fit and never leaves a half-written file where a
resumed run would look."""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..errors import MissingInputError
from ..file_io import write_atomically
from ..modeling.danet_head import Classifier
from .download import local_checkpoint
from .errors import CheckpointError
from .layouts import LAYOUTS, detect_layout, is_project_layout, summarize_keys, unwrap_state_dict

# BN's batch counter is not used by the forward pass of a BN in eval mode nor
# by detectron2's FrozenBN; files that lack it (or have it for a FrozenBN) load.
_IGNORED_SUFFIX = "num_batches_tracked"


def read_checkpoint(f):
    """torch.load without running pickled code: a tampered download cannot
    execute anything (these layouts hold only tensors and plain values)."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle refuses anything but tensors and plain values)
        raise CheckpointError(f"{f}: cannot be read as a checkpoint of tensors ({e})") from e


def to_project_names(loaded, source, layout_name=None):
    """The tensors of a loaded checkpoint in this project's names, and the name
    of the layout they were converted from (None if already ours).
    ``layout_name`` forces a layout; else it is detected from the keys."""
    state_dict = unwrap_state_dict(loaded)
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{source}: holds a {type(state_dict).__name__}, not a dict of tensors")
    if layout_name is None and is_project_layout(state_dict):
        return state_dict, None
    layout = LAYOUTS[layout_name] if layout_name else detect_layout(state_dict, source=source)
    return layout.convert(state_dict), layout.name


class SafeCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer with published layouts and strict checks.

    Args:
        require_all_weights: every weight of the model must come from the
            file (evaluation and prediction: a missing head would mean
            predicting with random weights).
        skip_mismatched_classes: a number of classes K, for fine-tuning to K
            classes: weights whose shape differs from the model's only in a
            first dimension of K (the classifiers) keep their initialisation,
            with a log line, instead of failing.
    """

    def __init__(self, model, save_dir="", *, require_all_weights=False, skip_mismatched_classes=None, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.require_all_weights = require_all_weights
        self.skip_mismatched_classes = skip_mismatched_classes

    def save(self, name, **kwargs):
        """Like fvcore's save, but written to a temporary file and renamed, so a
        job killed mid-write leaves the previous checkpoint and its tag intact."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        write_atomically(path, "wb", lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        """Write ``last_checkpoint`` (what ``--resume`` reads) atomically, as :meth:`save` writes checkpoints."""
        path = os.path.join(self.save_dir, "last_checkpoint")
        write_atomically(path, "w", lambda f: f.write(last_filename_basename))

    def load(self, path, *args, **kwargs):
        """Load ``path``, a file or a URL (http(s), or detectron2:// as detectron2
        names its files); a URL is downloaded into detectron2's cache and checked
        (danet/checkpoint/download.py)."""
        path = local_checkpoint(path) if path else path
        if path and "://" not in path and not os.path.isfile(path):
            raise MissingInputError(
                f"Checkpoint {path!r} does not exist: set MODEL.WEIGHTS to an existing file "
                "or URL ('' trains from random init), or check OUTPUT_DIR/last_checkpoint "
                "when using --resume."
            )
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f):
        """Read ``f`` safely; published checkpoints in another project's layout
        (danet/checkpoint/layouts.py) are renamed."""
        loaded = read_checkpoint(f)
        state_dict, layout = to_project_names(loaded, f)
        if layout is None:
            return loaded if "model" in loaded else {"model": state_dict}
        self.logger.info(f"{f}: converted weights from the {layout} layout ({LAYOUTS[layout].description})")
        return {"model": state_dict, "layout": layout}

    def _load_model(self, checkpoint):
        """fvcore's loading, then this project's checks, each a CheckpointError naming
        the keys: tensors of other shapes (but for classifiers skipped on purpose),
        parts of a published checkpoint the model lacks, and weights the model
        lacks when every weight is required (``require_all_weights``, or a whole
        published model)."""
        layout = checkpoint.get("layout")
        incompatible = super()._load_model(checkpoint)
        classifiers = classifier_keys(self.model)
        mismatched = self._skip_classifiers(incompatible.incorrect_shapes, classifiers)
        if mismatched:
            raise CheckpointError(describe_shape_mismatches(mismatched, classifiers))
        unused = [k for k in incompatible.unexpected_keys if not k.endswith(_IGNORED_SUFFIX)]
        if layout and unused:
            raise CheckpointError(
                f"MODEL.WEIGHTS ({layout} layout) does not match this config's model (not in the model: "
                f"{summarize_keys(unused)}): use the config made for that checkpoint (configs/mmseg/, configs/official/)"
            )
        # A whole published model must fill this one (but for classifiers skipped on purpose).
        skipped = {key for key, *_ in incompatible.incorrect_shapes}
        missing = [k for k in incompatible.missing_keys if not k.endswith(_IGNORED_SUFFIX) and k not in skipped]
        whole_model = layout in LAYOUTS and LAYOUTS[layout].whole_model
        if missing and (self.require_all_weights or whole_model):
            held = f" (it holds {LAYOUTS[layout].description})" if layout in LAYOUTS else ""
            raise CheckpointError(
                f"MODEL.WEIGHTS lacks weights of this model{held} (not in the checkpoint: "
                f"{summarize_keys(missing)}): it was trained with another config (e.g. MODEL.RESNETS.DEPTH, "
                "MODEL.DANET.AUX.ENABLED); use a checkpoint of this config, or the config made for that checkpoint "
                "(configs/mmseg/, configs/official/)"
            )
        return incompatible

    def _skip_classifiers(self, incorrect_shapes, classifiers):
        """The shape mismatches that are not classifiers (``classifiers``: their
        keys) to skip (see ``skip_mismatched_classes``)."""
        if self.skip_mismatched_classes is None:
            return incorrect_shapes
        kept = []
        for key, ckpt_shape, model_shape in incorrect_shapes:
            if (
                key in classifiers
                and ckpt_shape[1:] == model_shape[1:]
                and model_shape[0] == self.skip_mismatched_classes
            ):
                self.logger.warning(
                    f"MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER: not loading {key} "
                    f"{tuple(ckpt_shape)}, the model's {tuple(model_shape)} keeps its initialisation"
                )
            else:
                kept.append((key, ckpt_shape, model_shape))
        return kept


def classifier_keys(model):
    """The state-dict keys of ``model``'s classifiers
    (:class:`~danet.modeling.danet_head.Classifier`): the weights whose shape
    depends on the number of classes."""
    return {
        f"{name}.{key}" for name, module in model.named_modules() if isinstance(module, Classifier)
        for key in module.state_dict()
    }  # fmt: skip


def describe_shape_mismatches(mismatched, classifiers, shown=2):
    """A bounded one-line message for ``(key, checkpoint shape, model shape)``
    triples: how many, the first ``shown`` and the likely cause. When every
    mismatch is a classifier (a key in ``classifiers``) that differs only in
    its number of outputs, by the same two numbers, the checkpoint has another
    number of classes; otherwise it was trained with another backbone or head
    config."""
    examples = ", ".join(f"{key} {tuple(c)} vs model {tuple(m)}" for key, c, m in mismatched[:shown])
    first_dims = {(c[0], m[0]) for _, c, m in mismatched}
    if len(first_dims) == 1 and all(key in classifiers and tuple(c[1:]) == tuple(m[1:]) for key, c, m in mismatched):
        ((ckpt_classes, model_classes),) = first_dims
        cause = (
            f"{ckpt_classes} classes in the checkpoint, {model_classes} in the model: set MODEL.SEM_SEG_HEAD.NUM_CLASSES "
            f"{ckpt_classes}, or fine-tune with MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER True"
        )
    else:
        cause = "another backbone or head config (MODEL.RESNETS.*, MODEL.DANET.*): use the config it was trained with"
    return (
        f"MODEL.WEIGHTS does not fit this model: {len(mismatched)} tensors of other shapes "
        f"({examples}{', ...' if len(mismatched) > shown else ''}); {cause}"
    )
