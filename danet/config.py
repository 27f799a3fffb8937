"""Config defaults for DANet (most options under ``MODEL.DANET``) and
:func:`load_config`, the one way the scripts read a config."""
import os

import yaml

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.projects.deeplab import add_deeplab_config

from .data.datasets import check_datasets_fit_model, register_custom_dataset
from .errors import InputError
from .modeling import DANetSegmentor


def add_danet_config(cfg):
    """Add DANet options (and the DeepLab backbone options it reuses) to ``cfg``."""
    add_deeplab_config(cfg)
    # The DeepLab defaults turn on multi-grid and hard-pixel mining; DANet uses neither.
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    # build_dilated_resnet_backbone (danet/modeling/backbone.py): the first block of
    # each dilated stage gets half the stage's dilation (res4 1, 2, 2, ...; res5 2, 4, 4),
    # as mmsegmentation's ResNetV1c (contract_dilation=True) and the DANet authors' ResNet.
    cfg.MODEL.RESNETS.CONTRACT_DILATION = True

    # Fine-tuning to another MODEL.SEM_SEG_HEAD.NUM_CLASSES: in training, weights of
    # MODEL.WEIGHTS whose shape differs from the model's only in the number of classes
    # (the classifiers) are skipped with a warning instead of refused. Evaluation and
    # prediction always need every weight.
    cfg.MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER = False

    # The training log (console, metrics.json, TensorBoard) is written every LOG_PERIOD
    # iterations and after the last (detectron2 fixes 20; its values stay medians over 20).
    cfg.LOG_PERIOD = 20

    cfg.MODEL.DANET = CN()
    # Each branch reduces the backbone's channels by this factor (2048 -> 512).
    cfg.MODEL.DANET.BRANCH_REDUCTION = 4
    # Query/key width of position attention is the branch width divided by this (512 -> 64).
    cfg.MODEL.DANET.KEY_REDUCTION = 8
    # "qkv": the paper's position attention with query/key/value 1x1 convs.
    # "seed": the original project's simplification, attention from the features
    # and their transpose, without the three convs.
    cfg.MODEL.DANET.POSITION_ATTENTION = "qkv"
    # How position attention is computed: "chunked" (query blocks, an autograd
    # Function that recomputes scores in backward) and "sdpa" (PyTorch's fused
    # scaled_dot_product_attention) never hold the N x N matrix; "naive"
    # materialises it (for comparison and debugging); "auto" is chunked on CPU
    # and sdpa on CUDA (see danet.modeling.attention.resolve_impl).
    cfg.MODEL.DANET.ATTENTION_IMPL = "auto"
    cfg.MODEL.DANET.DROPOUT = 0.1
    # loss = SEM_SEG_HEAD.LOSS_WEIGHT * CE(fused) + POSITION_LOSS_WEIGHT * CE(position)
    #        + CHANNEL_LOSS_WEIGHT * CE(channel) [+ AUX.LOSS_WEIGHT * CE(aux)]
    cfg.MODEL.DANET.POSITION_LOSS_WEIGHT = 1.0
    cfg.MODEL.DANET.CHANNEL_LOSS_WEIGHT = 1.0
    # What each cross-entropy term is averaged over: "valid_pixels" (F.cross_entropy's mean,
    # detectron2's) or "all_pixels", ignored ones included (mmsegmentation's CrossEntropyLoss
    # with avg_non_ignore=False, its DANet configs'): with a fraction f of the pixels ignored,
    # "all_pixels" gives (1 - f) times the loss and the gradient.
    cfg.MODEL.DANET.LOSS_AVERAGE = "valid_pixels"
    # Initialisation of the head (before MODEL.WEIGHTS are loaded): "mmseg" (mmsegmentation's
    # DAHead and FCNHead as its runner initialises them: Kaiming-normal conv-norm-relu convs,
    # Normal(std 0.01) fused and auxiliary classifiers) or "pytorch" (PyTorch's defaults, the
    # DANet authors'). See danet/modeling/danet_head.py.
    cfg.MODEL.DANET.HEAD_INIT = "mmseg"
    # align_corners of the bilinear resizes of the logits: to the labels in training,
    # to the image and then to the output size in inference (DANetSegmentor).
    # mmsegmentation's 769x769 configs and the DANet authors use True.
    cfg.MODEL.DANET.ALIGN_CORNERS = False
    # Memory-lean training (danet/modeling/memory_saving.py; docs/GETTING_STARTED.md).
    # True recomputes in the backward the backbone and the losses, the parts that pay most.
    # MEMORY_SAVING_CHECKPOINT adds parts, or picks them with MEMORY_SAVING False: any of
    # "stem", "res2" .. "res5" (each block on its own), "position_branch",
    # "channel_branch", "losses" (each term's resize to the labels).
    cfg.MODEL.DANET.MEMORY_SAVING = False
    cfg.MODEL.DANET.MEMORY_SAVING_CHECKPOINT = []

    # Auxiliary FCN head on res4 (the authors' ``--aux``).
    cfg.MODEL.DANET.AUX = CN()
    cfg.MODEL.DANET.AUX.ENABLED = False
    cfg.MODEL.DANET.AUX.IN_FEATURE = "res4"
    cfg.MODEL.DANET.AUX.LOSS_WEIGHT = 0.2

    # SOLVER.LR_SCHEDULER_NAME "PolyLR" (danet/engine/lr_scheduler.py): mmsegmentation's poly
    # schedule, from SOLVER.BASE_LR down to this absolute rate at the last iteration, with
    # SOLVER.POLY_LR_POWER (deeplab's key, also WarmupPolyLR's).
    cfg.SOLVER.POLY_LR_ETA_MIN = 0.0

    # ---------------------------------------------------------------------------
    # Inference (danet/modeling/test_time_augmentation.py, train_net.py --eval-only, demo.py).
    # ---------------------------------------------------------------------------
    # Multi-scale + flip testing reuses detectron2's TEST.AUG.ENABLED and FLIP.
    # DANet's scales are ratios of the test loader's image size, as its
    # references give them, so they live in TEST.AUG.SCALES; detectron2's
    # absolute TEST.AUG.MIN_SIZES / MAX_SIZE are not used.
    cfg.TEST.AUG.SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    # How the views are combined: "logits" (the DANet authors) or "probabilities"
    # (softmax per view, mmsegmentation's multi-scale + flip).
    cfg.TEST.AUG.AVERAGE = "logits"
    # Views larger than CROP_SIZE (h, w) are segmented in windows moved by
    # STRIDE (h, w) and averaged where they overlap; also applies without TEST.AUG.
    cfg.TEST.SLIDING_WINDOW = CN()
    cfg.TEST.SLIDING_WINDOW.ENABLED = False
    cfg.TEST.SLIDING_WINDOW.CROP_SIZE = (768, 768)
    cfg.TEST.SLIDING_WINDOW.STRIDE = (512, 512)
    # Also run detectron2's CityscapesSemSegEvaluator (cityscapesScripts, the
    # official numbers) on datasets whose metadata has Cityscapes' gt_dir.
    cfg.TEST.CITYSCAPES_EVALUATOR = False
    # Evaluation also writes the attention pictures (tools/visualize_attention.py)
    # of this many images to TensorBoard, tagged attention/<image>.
    cfg.TEST.ATTENTION_PICTURES = 0

    # ---- Data pipeline (danet.data.build_train_augmentation, build_test_augmentation) ----
    # Training: resize, crop (INPUT.CROP), flip (INPUT.RANDOM_FLIP), photometric
    # distortion, then padding to the crop, in mmsegmentation's order and with its
    # random draws. Images are resized with OpenCV as mmcv does (danet/data/resize.py)
    # by RESIZE_TYPE "scale", the test loader (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST),
    # demo.py and TEST.AUG.
    # How training images are resized before the crop:
    # "shortest_edge": detectron2's ResizeShortestEdge (PIL) to INPUT.MIN_SIZE_TRAIN (the
    #                  original project's 800..960);
    # "scale": mmseg's RandomResize(scale=BASE_SIZE, ratio_range=RANGE, keep_ratio=True):
    #          a ratio r drawn from INPUT.SCALE.RANGE, and the image resized to fit within
    #          BASE_SIZE x r. BASE_SIZE is an int (the long side becomes BASE_SIZE x r, the
    #          DANet authors' scaling) or a pair (long, short) as mmseg's scale, e.g.
    #          (2048, 1024) for Cityscapes, (2048, 512) for ADE20K and VOC. No default:
    #          set it with "scale". (yacs: an override on the command line keeps the
    #          form the config file gives it, int or pair.)
    cfg.INPUT.RESIZE_TYPE = "shortest_edge"
    cfg.INPUT.SCALE = CN()
    cfg.INPUT.SCALE.BASE_SIZE = None
    cfg.INPUT.SCALE.RANGE = (0.5, 2.0)
    # The crop (INPUT.CROP.SINGLE_CATEGORY_MAX_AREA as mmseg's cat_max_ratio) is padded
    # at the bottom and right to INPUT.CROP.SIZE: the image with MODEL.PIXEL_MEAN (0 after
    # normalisation, as mmseg's data preprocessor pads), the label with the ignore value.
    # mmseg's PhotoMetricDistortion: each step with probability 0.5, brightness shifted
    # by up to +-BRIGHTNESS_DELTA, contrast scaled by a factor in CONTRAST_RANGE (before
    # or after the HSV steps, at random), saturation by a factor in SATURATION_RANGE,
    # OpenCV's hue (0..179) shifted by up to +-HUE_DELTA.
    cfg.INPUT.PHOTOMETRIC_DISTORTION = CN()
    cfg.INPUT.PHOTOMETRIC_DISTORTION.ENABLED = False
    cfg.INPUT.PHOTOMETRIC_DISTORTION.BRIGHTNESS_DELTA = 32
    cfg.INPUT.PHOTOMETRIC_DISTORTION.CONTRAST_RANGE = (0.5, 1.5)
    cfg.INPUT.PHOTOMETRIC_DISTORTION.SATURATION_RANGE = (0.5, 1.5)
    cfg.INPUT.PHOTOMETRIC_DISTORTION.HUE_DELTA = 18
    # A training sample that cannot be read or whose label does not fit stops
    # the run naming the file; True skips such samples with a warning and a count.
    cfg.DATALOADER.SKIP_BAD_SAMPLES = False

    # ---- Optimizer (danet/engine/optimizer.py) ----
    # The learning rate of the head's parameters (sem_seg_head.*, the auxiliary head
    # included) is SOLVER.BASE_LR times this: the DANet authors train the head at 10x.
    cfg.SOLVER.HEAD_LR_FACTOR = 1.0

    # ---- Preemption (danet/engine/preemption.py; docs/CLUSTERS.md) ----
    # On one of these signals training finishes the iteration, every process
    # stops at the same one, the main process saves model_<iter>_preempted.pth
    # and the job exits with status 75; () leaves the signals' default action.
    cfg.PREEMPTION = CN()
    cfg.PREEMPTION.SIGNALS = ("SIGTERM", "SIGUSR1")
    # Processes agree on stopping every CHECK_PERIOD iterations (one all-reduce of a flag).
    cfg.PREEMPTION.CHECK_PERIOD = 1
    # Without --resume, resume anyway when OUTPUT_DIR's last checkpoint was saved on a
    # signal, or when SLURM requeued the job or torchrun restarted it.
    cfg.PREEMPTION.AUTO_RESUME = True

    # Your own data (danet/data/datasets/register_folder.py): ROOT/images/<split>
    # and ROOT/labels/<split> become dataset <NAME>_sem_seg_<split> (NAME defaults
    # to ROOT's folder name). The classes are ROOT/classes.yaml's unless CLASSES
    # is given, with optional COLORS ([[R, G, B], ...]) and IGNORE_LABEL.
    cfg.DATASETS.CUSTOM = CN()
    cfg.DATASETS.CUSTOM.ROOT = ""
    cfg.DATASETS.CUSTOM.NAME = ""
    cfg.DATASETS.CUSTOM.CLASSES = []
    cfg.DATASETS.CUSTOM.COLORS = []
    cfg.DATASETS.CUSTOM.IGNORE_LABEL = 255


def load_config(config_file, opts=()):
    """detectron2's config with the DANet defaults, merged from ``config_file``
    (and its ``_BASE_`` files) and ``KEY VALUE`` overrides; a bad file, key or
    value raises an InputError that names it."""
    cfg = get_cfg()
    add_danet_config(cfg)
    if not os.path.isfile(config_file):
        raise InputError(f"Config file {config_file!r} does not exist: pass --config-file configs/<name>.yaml")
    try:
        cfg.merge_from_file(config_file)
    except yaml.YAMLError as e:
        raise InputError(_yaml_message(config_file, e)) from e
    except FileNotFoundError as e:  # a _BASE_, relative to the file that names it
        raise InputError(
            f"{config_file}: its _BASE_ {e.filename} does not exist: fix the _BASE_ path "
            "(relative to the file that names it)"
        ) from e
    except (KeyError, ValueError, AssertionError) as e:
        raise InputError(f"{config_file}: {_yacs_message(e)}") from e
    if len(opts) % 2:
        raise InputError(f"Overrides must be KEY VALUE pairs; {opts[-1]!r} has no value")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as e:
        raise InputError(f"Command-line override: {_yacs_message(e)}") from e
    check_config(cfg)
    register_custom_dataset(cfg)
    check_datasets_fit_model(cfg)
    return cfg


def check_config(cfg):
    """Refuse values of this project's keys that would be ignored or fail late."""
    if cfg.LOG_PERIOD < 1:  # yacs already refuses what is not an int
        raise InputError(f"LOG_PERIOD must be a number of iterations >= 1, got {cfg.LOG_PERIOD!r}")
    danet = cfg.MODEL.DANET
    if danet.MEMORY_SAVING or danet.MEMORY_SAVING_CHECKPOINT:
        name = cfg.MODEL.META_ARCHITECTURE
        if name not in META_ARCH_REGISTRY or not issubclass(META_ARCH_REGISTRY.get(name), DANetSegmentor):
            raise InputError(
                f"MODEL.DANET.MEMORY_SAVING needs MODEL.META_ARCHITECTURE \"DANetSegmentor\" (or a subclass), "
                f"which applies it; got {name!r}"
            )


def _yaml_message(config_file, error):
    """One line naming the file (maybe a _BASE_), line and column of a YAML syntax error."""
    mark = getattr(error, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else config_file
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    return f"{where}: not valid YAML ({problem}): fix the file's syntax"


def _yacs_message(error):
    message = error.args[0] if error.args else repr(error)
    if "Non-existent" in str(message):
        return f"{message}: check the key against danet/config.py and detectron2's defaults"
    if "Type mismatch" in str(message):
        return f"{message}: give a value of the default's type"
    return str(message)
