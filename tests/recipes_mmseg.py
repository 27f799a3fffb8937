"""mmsegmentation 1.2.2's DANet runs as config values, read from mmseg's own config
files (``.reference/mmseg/.mim/configs/danet/``, through mmengine's Config), the
defaults of the classes they build where a config leaves a value out (through
``inspect.signature``; mmseg imported by the ``mmseg`` fixture) and its model
card (``configs/danet/metafile.yaml``), so the table cannot drift from the
source. tests/test_recipes.py compares each configs/ file that claims a run
with these rows key by key; a row's source is the mmseg config key it comes from.
"""

import inspect
import json
import os
from collections import namedtuple

import yaml

Row = namedtuple("Row", "key value source")
# mmseg's dataset classes -> this project's registered splits.
DATASETS = {
    "CityscapesDataset": ("cityscapes_fine_sem_seg_train", "cityscapes_fine_sem_seg_val"),
    "ADE20KDataset": ("ade20k_sem_seg_train", "ade20k_sem_seg_val"),
    "PascalVOCDataset": ("voc_2012_sem_seg_train_aug", "voc_2012_sem_seg_val"),
}
# configs/ files that mirror an mmseg run under another name (the header says only OUTPUT_DIR differs).
ALIASES = {"r50.yaml": "danet_r50-d8_512x1024_80k_cityscapes", "r101.yaml": "danet_r101-d8_769x769_80k_cityscapes"}


def published_runs(mmseg_dir):
    """{checkpoint stem as in configs/mmseg/ (danet_r50-d8_512x1024_40k_cityscapes): metafile entry}."""
    with open(os.path.join(mmseg_dir, ".mim", "configs", "danet", "metafile.yaml")) as f:
        models = yaml.safe_load(f)["Models"]
    return {model["Weights"].split("/")[-2]: model for model in models}


def claimed_runs(repo, mmseg_dir):
    """{configs/ file: metafile entry of the mmseg run it claims}."""
    runs = published_runs(mmseg_dir)
    claims = {f"mmseg/{name}.yaml": run for name, run in runs.items()}
    claims.update({alias: runs[name] for alias, name in ALIASES.items()})
    missing = [name for name in claims if not os.path.isfile(os.path.join(repo, "configs", name))]
    assert not missing, f"mmseg's model card has runs without a config: {missing}"
    return claims


def load_run_config(mmseg_dir, run):
    from mmengine.config import Config

    return Config.fromfile(os.path.join(mmseg_dir, ".mim", run["Config"]))


def _default(registry, type_name, name):
    """The default of argument ``name`` of the class ``type_name`` of mmseg's
    ``registry``, or of the first base class that declares it (ResNetV1c hands
    its keyword arguments to ResNet)."""
    for cls in registry.get(type_name).__mro__:
        parameter = inspect.signature(cls.__init__).parameters.get(name)
        if parameter is not None:
            assert parameter.default is not parameter.empty, (type_name, name)
            return parameter.default
    raise AssertionError(f"{type_name} takes no argument {name}")


def _feature(in_index):
    return f"res{in_index + 2}"  # ResNet stages 0..3 are res2..res5


def rows(run, config, mmseg_dir):
    """The rows of one mmseg run: ``run`` its metafile entry, ``config`` its
    mmengine Config. Needs mmseg imported (the ``mmseg`` fixture)."""
    from mmseg.registry import MODELS, TRANSFORMS

    model = config.model
    backbone, head, aux = model.backbone, model.decode_head, model.auxiliary_head
    assert backbone.type == "ResNetV1c" and head.type == "DAHead" and aux.type == "FCNHead", run["Name"]
    train = {step["type"]: step for step in config.train_pipeline}
    test = {step["type"]: step for step in config.test_pipeline}
    optimizer = config.optim_wrapper.optimizer
    assert "paramwise_cfg" not in config.optim_wrapper, "norm and bias settings would differ"
    (scheduler,) = config.param_scheduler
    with open(os.path.join(mmseg_dir, "..", "mmengine", "hub", "openmmlab.json")) as f:
        urls = json.load(f)
    tta_resizes = config.tta_pipeline[1].transforms[0]
    dataset_type = config.train_dataloader.dataset.get("type")
    if dataset_type == "ConcatDataset":  # VOC aug: VOC train + SBD
        dataset_type = config.train_dataloader.dataset.datasets[0].type
    slide = model.test_cfg.mode == "slide"
    stem_channels = backbone.get("stem_channels", _default(MODELS, backbone.type, "stem_channels"))
    # fmt: off
    table = [
        Row("MODEL.WEIGHTS", urls[model.pretrained.split("//")[1]], "model.pretrained (mmengine/hub/openmmlab.json)"),
        Row("MODEL.RESNETS.DEPTH", backbone.depth, "model.backbone.depth"),
        Row("MODEL.RESNETS.STEM_TYPE", "deeplab", "model.backbone.type ResNetV1c: the deep stem"),
        Row("MODEL.RESNETS.STEM_OUT_CHANNELS", stem_channels,
            f"model.backbone.stem_channels (ResNetV1c's deep stem: {stem_channels // 2}-{stem_channels // 2}-{stem_channels})"),
        Row("MODEL.RESNETS.STRIDE_IN_1X1", backbone.style == "caffe", "model.backbone.style"),
        Row("MODEL.RESNETS.RES4_DILATION", backbone.dilations[2], "model.backbone.dilations"),
        Row("MODEL.RESNETS.RES5_DILATION", backbone.dilations[3], "model.backbone.dilations"),
        Row("MODEL.RESNETS.CONTRACT_DILATION", backbone.contract_dilation, "model.backbone.contract_dilation"),
        Row("MODEL.RESNETS.RES5_MULTI_GRID", list(backbone.get("multi_grid") or (1, 1, 1)), "model.backbone.multi_grid"),
        Row("MODEL.RESNETS.NORM", backbone.norm_cfg.type, "model.backbone.norm_cfg"),
        Row("MODEL.SEM_SEG_HEAD.NORM", head.norm_cfg.type, "model.decode_head.norm_cfg"),
        Row("MODEL.SEM_SEG_HEAD.IN_FEATURES", [_feature(head.in_index)], "model.decode_head.in_index"),
        Row("MODEL.SEM_SEG_HEAD.NUM_CLASSES", head.num_classes, "model.decode_head.num_classes"),
        Row("MODEL.SEM_SEG_HEAD.IGNORE_VALUE", head.get("ignore_index", 255), "model.decode_head.ignore_index"),
        Row("MODEL.SEM_SEG_HEAD.LOSS_WEIGHT", head.loss_decode.loss_weight, "model.decode_head.loss_decode (pam_cam)"),
        # DAHead.loss_by_feat applies loss_decode to the pam_cam, pam and cam logits alike.
        Row("MODEL.DANET.POSITION_LOSS_WEIGHT", head.loss_decode.loss_weight, "model.decode_head.loss_decode (pam)"),
        Row("MODEL.DANET.CHANNEL_LOSS_WEIGHT", head.loss_decode.loss_weight, "model.decode_head.loss_decode (cam)"),
        Row("MODEL.DANET.BRANCH_REDUCTION", head.in_channels // head.channels, "model.decode_head.in_channels / channels"),
        Row("MODEL.DANET.KEY_REDUCTION", head.channels // head.pam_channels, "model.decode_head.channels / pam_channels"),
        Row("MODEL.DANET.POSITION_ATTENTION", "qkv", "model.decode_head.type DAHead (PAM's query/key/value projections)"),
        Row("MODEL.DANET.DROPOUT", head.dropout_ratio, "model.decode_head.dropout_ratio"),
        Row("MODEL.DANET.LOSS_AVERAGE", "valid_pixels" if head.loss_decode.get("avg_non_ignore") else "all_pixels",
            "model.decode_head.loss_decode.avg_non_ignore (default False)"),
        Row("MODEL.DANET.HEAD_INIT", "mmseg", "DAHead / FCNHead init_weights"),
        Row("MODEL.DANET.ALIGN_CORNERS", head.align_corners, "model.decode_head.align_corners"),
        Row("MODEL.DANET.AUX.ENABLED", True, "model.auxiliary_head"),
        Row("MODEL.DANET.AUX.IN_FEATURE", _feature(aux.in_index), "model.auxiliary_head.in_index"),
        Row("MODEL.DANET.AUX.LOSS_WEIGHT", aux.loss_decode.loss_weight, "model.auxiliary_head.loss_decode.loss_weight"),
        Row("MODEL.PIXEL_MEAN", list(model.data_preprocessor.mean), "model.data_preprocessor.mean"),
        Row("MODEL.PIXEL_STD", list(model.data_preprocessor.std), "model.data_preprocessor.std"),
        Row("INPUT.FORMAT", "RGB" if model.data_preprocessor.bgr_to_rgb else "BGR", "model.data_preprocessor.bgr_to_rgb"),
        Row("DATASETS.TRAIN", [DATASETS[dataset_type][0]], "train_dataloader.dataset.type"),
        Row("DATASETS.TEST", [DATASETS[config.val_dataloader.dataset.type][1]], "val_dataloader.dataset.type"),
        Row("SOLVER.IMS_PER_BATCH", run["Metadata"]["Batch Size"], "metafile.yaml Batch Size"),
        Row("SOLVER.BASE_LR", optimizer.lr, "optim_wrapper.optimizer.lr"),
        Row("SOLVER.MOMENTUM", optimizer.momentum, "optim_wrapper.optimizer.momentum"),
        Row("SOLVER.NESTEROV", optimizer.get("nesterov", False), "optim_wrapper.optimizer.nesterov"),
        Row("SOLVER.WEIGHT_DECAY", optimizer.weight_decay, "optim_wrapper.optimizer.weight_decay"),
        # No paramwise_cfg: norms and biases decay and learn as every weight.
        Row("SOLVER.WEIGHT_DECAY_NORM", optimizer.weight_decay, "optim_wrapper (no paramwise_cfg)"),
        Row("SOLVER.WEIGHT_DECAY_BIAS", None, "optim_wrapper (no paramwise_cfg)"),
        Row("SOLVER.BIAS_LR_FACTOR", 1.0, "optim_wrapper (no paramwise_cfg)"),
        Row("SOLVER.HEAD_LR_FACTOR", 1.0, "optim_wrapper (no paramwise_cfg)"),
        Row("SOLVER.CLIP_GRADIENTS.ENABLED", config.optim_wrapper.get("clip_grad") is not None, "optim_wrapper.clip_grad"),
        Row("SOLVER.MAX_ITER", config.train_cfg.max_iters, "train_cfg.max_iters"),
        Row("SOLVER.LR_SCHEDULER_NAME", scheduler.type, "param_scheduler.type"),
        Row("SOLVER.POLY_LR_POWER", scheduler.power, "param_scheduler.power"),
        Row("SOLVER.POLY_LR_ETA_MIN", scheduler.eta_min, "param_scheduler.eta_min"),
        Row("SOLVER.WARMUP_ITERS", 0, "param_scheduler (PolyLR alone, from iteration 0)"),
        Row("SOLVER.CHECKPOINT_PERIOD", config.default_hooks.checkpoint.interval, "default_hooks.checkpoint.interval"),
        Row("TEST.EVAL_PERIOD", config.train_cfg.val_interval, "train_cfg.val_interval"),
        Row("INPUT.CROP.ENABLED", True, "train_pipeline RandomCrop"),
        Row("INPUT.CROP.SIZE", list(train["RandomCrop"].crop_size), "train_pipeline RandomCrop.crop_size"),
        Row("INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", train["RandomCrop"].cat_max_ratio, "train_pipeline RandomCrop.cat_max_ratio"),
        Row("INPUT.SCALE.RANGE", list(train["RandomResize"].ratio_range), "train_pipeline RandomResize.ratio_range"),
        Row("INPUT.RANDOM_FLIP", "horizontal" if train["RandomFlip"].prob == 0.5 else "?", "train_pipeline RandomFlip.prob"),
        # Resize(scale, keep_ratio): the short side up to min(scale), the long side capped at max(scale).
        Row("INPUT.MIN_SIZE_TEST", min(test["Resize"].scale), "test_pipeline Resize.scale"),
        Row("INPUT.MAX_SIZE_TEST", max(test["Resize"].scale), "test_pipeline Resize.scale"),
        Row("TEST.SLIDING_WINDOW.ENABLED", slide, "model.test_cfg.mode"),
        Row("TEST.AUG.SCALES", [r.scale_factor for r in tta_resizes], "tta_pipeline TestTimeAug Resize.scale_factor"),
        Row("TEST.AUG.FLIP", any(f.prob == 1.0 for f in config.tta_pipeline[1].transforms[1]), "tta_pipeline RandomFlip"),
        Row("TEST.AUG.AVERAGE", "probabilities", "tta_model SegTTAModel (merge_preds averages softmax)"),
    ]
    # fmt: on
    if slide:
        table += [
            Row("TEST.SLIDING_WINDOW.CROP_SIZE", list(model.test_cfg.crop_size), "model.test_cfg.crop_size"),
            Row("TEST.SLIDING_WINDOW.STRIDE", list(model.test_cfg.stride), "model.test_cfg.stride"),
        ]
    photometric = train["PhotoMetricDistortion"]

    def distortion(name):
        return photometric.get(name, _default(TRANSFORMS, "PhotoMetricDistortion", name))

    # fmt: off
    table += [
        Row("INPUT.RESIZE_TYPE", "scale", "train_pipeline RandomResize (keep_ratio)"),
        Row("INPUT.SCALE.BASE_SIZE", list(train["RandomResize"].scale), "train_pipeline RandomResize.scale (long, short)"),
        Row("INPUT.PHOTOMETRIC_DISTORTION.ENABLED", True, "train_pipeline PhotoMetricDistortion"),
        Row("INPUT.PHOTOMETRIC_DISTORTION.BRIGHTNESS_DELTA", distortion("brightness_delta"), "PhotoMetricDistortion.brightness_delta"),
        Row("INPUT.PHOTOMETRIC_DISTORTION.CONTRAST_RANGE", list(distortion("contrast_range")), "PhotoMetricDistortion.contrast_range"),
        Row("INPUT.PHOTOMETRIC_DISTORTION.SATURATION_RANGE", list(distortion("saturation_range")), "PhotoMetricDistortion.saturation_range"),
        Row("INPUT.PHOTOMETRIC_DISTORTION.HUE_DELTA", distortion("hue_delta"), "PhotoMetricDistortion.hue_delta"),
    ]
    # fmt: on
    return table
