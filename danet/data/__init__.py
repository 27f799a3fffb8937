from . import datasets  # noqa: F401  (registers the datasets)
from .augmentation import build_test_augmentation, build_train_augmentation
from .dataset_mapper import BadSampleError, SemSegDatasetMapper, build_test_mapper, build_train_mapper
