"""Dataset registrations. Importing this package registers, under
``$DETECTRON2_DATASETS`` (default ``./datasets``), Cityscapes' checked loaders,
ADE20K, PASCAL VOC 2012 (+SBD), PASCAL Context 59 and COCO-Stuff-164k."""
import os

from .metadata import check_datasets_fit_model, class_names_and_colors, pascal_palette, sem_seg_metadata
from .register_ade20k import register_ade20k_sem_seg, register_all_ade20k
from .register_cityscapes import register_cityscapes_sem_seg
from .register_coco_stuff import register_all_coco_stuff, register_coco_stuff_sem_seg
from .register_folder import register_custom_dataset, register_folder_sem_seg
from .register_pascal_context import register_all_pascal_context, register_pascal_context_sem_seg
from .register_voc import register_all_voc, register_voc_sem_seg

_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
for _register_all in (register_all_ade20k, register_all_voc, register_all_pascal_context, register_all_coco_stuff):
    _register_all(_root)
