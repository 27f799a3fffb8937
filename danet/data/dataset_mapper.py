"""The dataset mapper of semantic segmentation: each sample read and checked,
then augmented."""
import copy
import logging

import numpy as np
import torch
from PIL import Image

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..errors import InputError
from .augmentation import build_test_augmentation, build_train_augmentation

logger = logging.getLogger(__name__)


class BadSampleError(InputError):
    """A dataset sample that cannot be used; the message names the file."""


class SemSegDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper for semantic segmentation, which checks each
    sample before it is used.

    An image or label that cannot be read (missing, zero bytes, truncated), a
    label of another size than its image, or a label holding ids outside
    ``[0, num_classes)`` other than the ignore value raises BadSampleError
    naming the file; 16-bit labels in range are read as 8-bit ones. Only the
    training mapper reads labels. In training with ``DATALOADER.SKIP_BAD_SAMPLES`` the
    sample is instead skipped with a warning and a count, and detectron2's
    MapDataset draws another one.
    """

    def __init__(self, cfg, is_train, augmentations):
        super().__init__(cfg, is_train=is_train, augmentations=augmentations)
        self.num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        self.ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        self.skip_bad_samples = is_train and cfg.DATALOADER.SKIP_BAD_SAMPLES
        self.num_skipped = 0

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        try:
            image, sem_seg = self.read_sample(dataset_dict)
        except BadSampleError as e:
            if not self.skip_bad_samples:
                raise
            self.num_skipped += 1
            logger.warning(f"Skipped: {e} ({self.num_skipped} bad samples skipped by this data worker)")
            return None
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        self.augmentations(aug_input)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        if self.is_train:
            dataset_dict["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype("long"))
        return dataset_dict

    def read_sample(self, dataset_dict):
        """The image [H, W, 3] and its label [H, W] (None without one), checked."""
        image_file = dataset_dict["file_name"]
        image = _read(image_file, lambda f: utils.read_image(f, format=self.image_format))
        try:
            utils.check_image_size(dataset_dict, image)
        except utils.SizeMismatchError as e:
            raise BadSampleError(f"{image_file}: {e}") from e
        # At test time the evaluator reads the label itself, at its full size.
        label_file = dataset_dict.pop("sem_seg_file_name", None) if self.is_train else None
        if label_file is None:
            return image, None
        label = _read(label_file, lambda f: np.asarray(Image.open(f)))
        if label.ndim != 2:
            raise BadSampleError(
                f"{label_file}: a label must be one channel of train ids, got shape {label.shape} "
                "(labelTrainIds files come from datasets/prepare_cityscapes.py)"
            )
        if label.shape != image.shape[:2]:
            raise BadSampleError(
                f"{label_file}: label is {label.shape[1]}x{label.shape[0]} but its image {image_file} "
                f"is {image.shape[1]}x{image.shape[0]}"
            )
        invalid = ((label < 0) | (label >= self.num_classes)) & (label != self.ignore_value)
        if invalid.any():
            raise BadSampleError(
                f"{label_file}: ids {sorted(np.unique(label[invalid]).tolist())[:5]} are outside the "
                f"train ids 0..{self.num_classes - 1} and the ignore value {self.ignore_value} "
                "(MODEL.SEM_SEG_HEAD.NUM_CLASSES, IGNORE_VALUE)"
            )
        return image, _as_uint8(label, label_file)


def _as_uint8(label, label_file):
    """A 16- or 32-bit label (PIL modes I;16, I) as uint8, the label type the
    training augmentations expect (detectron2's PIL resize takes 8-bit labels only)."""
    if label.dtype == np.uint8:
        return label
    if label.max(initial=0) > 255:
        raise BadSampleError(
            f"{label_file}: id {label.max()} does not fit the 8 bits of a label: save ignored "
            "pixels as 255 and set MODEL.SEM_SEG_HEAD.IGNORE_VALUE 255"
        )
    return label.astype(np.uint8)


def _read(path, reader):
    """``reader(path)``, or a BadSampleError naming a missing, empty or broken file."""
    try:
        return reader(path)
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for missing, empty or broken files
        raise BadSampleError(f"{path}: cannot read it ({e})") from e


def build_train_mapper(cfg):
    """The dataset mapper of training, with the augmentations of :func:`build_train_augmentation`."""
    return SemSegDatasetMapper(cfg, is_train=True, augmentations=build_train_augmentation(cfg))


def build_test_mapper(cfg):
    """Resize to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST (detectron2's test sizes,
    resized with OpenCV as mmseg does); labels are left to the evaluator."""
    return SemSegDatasetMapper(cfg, is_train=False, augmentations=build_test_augmentation(cfg))
