"""A checkpointer that fails loudly on weights that do not fit and never leaves
a half-written file where a resumed run would look."""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..errors import MissingInputError
from .errors import CheckpointError
from .layouts import LAYOUTS, detect_layout, is_project_layout, unwrap_state_dict


class SafeCheckpointer(DetectionCheckpointer):
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
        _write_atomically(path, "wb", lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, "last_checkpoint")
        _write_atomically(path, "w", lambda f: f.write(last_filename_basename))

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise MissingInputError(
                f"Checkpoint {path!r} does not exist: set MODEL.WEIGHTS to an existing file "
                "or URL ('' trains from random init), or check OUTPUT_DIR/last_checkpoint "
                "when using --resume."
            )
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f):
        """Read ``f`` without running pickled code (a tampered download cannot
        execute anything), and rename the weights of a published checkpoint
        in another project's layout (danet/checkpoint/layouts.py)."""
        try:
            loaded = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (pickle refuses anything but tensors and plain values)
            raise CheckpointError(f"{f}: cannot be read as a checkpoint of tensors ({e})") from e
        state_dict = unwrap_state_dict(loaded)
        if is_project_layout(state_dict):
            return loaded if "model" in loaded else {"model": state_dict}
        layout = detect_layout(state_dict, source=f)
        self.logger.info(f"{f}: converting weights from the {layout.name} layout ({layout.description})")
        return {"model": layout.convert(state_dict), "layout": layout.name}

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if incompatible.incorrect_shapes:
            mismatches = ", ".join(
                f"{key} {tuple(ckpt_shape)} vs model {tuple(model_shape)}"
                for key, ckpt_shape, model_shape in incompatible.incorrect_shapes
            )
            raise CheckpointError(
                f"MODEL.WEIGHTS does not fit this model ({mismatches}): use a checkpoint "
                "trained with the same config (e.g. MODEL.SEM_SEG_HEAD.NUM_CLASSES)."
            )
        layout = LAYOUTS.get(checkpoint.get("layout"))
        if layout is not None and layout.whole_model:
            _check_all_keys_used(layout, incompatible)
        return incompatible


def _check_all_keys_used(layout, incompatible):
    """A converted whole model must fill every parameter and use every tensor."""
    problems = [
        f"{what}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
        for what, keys in (
            ("not in the checkpoint", incompatible.missing_keys),
            ("not in the model", incompatible.unexpected_keys),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"MODEL.WEIGHTS ({layout.name} layout) does not match this config's model ({'; '.join(problems)}): "
            "use the config made for that checkpoint (configs/mmseg/, configs/official/)."
        )


def _write_atomically(path, mode, write):
    tmp_path = f"{path}.tmp"
    with open(tmp_path, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
