"""The DANet authors' training recipe as config values, each with the line of
their code it comes from (junfu1115/DANet at commit fc0e063 of 2020-08-03, the
last version of the code that trained DANet101.pth.tar; its README gives the
Cityscapes command). tests/test_recipes.py compares the configs that claim it
with these rows key by key.

Their later rewrite (the repository's HEAD, experiments/segmentation/train.py)
cannot train DANet: its SegmentationLosses takes one prediction (two with
--aux) where DANet returns three, so it is not a source of the recipe.
"""

from collections import namedtuple

COMMIT = "fc0e0639be7e7a57a33186f1fe2fd6a96b920d8b"
# key: a config key; value: what the recipe gives it; source: "file:line" of their
# code at COMMIT; snippet: text on that line (checked against the repository when present).
Row = namedtuple("Row", "key value source snippet")
# Training images per dataset split the configs train on (what their epochs count).
TRAIN_IMAGES = {"cityscapes": 2975, "ade20k": 20210, "pascal_aug": 10582, "pcontext": 4998}


# fmt: off
def common_rows():
    """What their code does for every dataset."""
    return [
        Row("MODEL.RESNETS.DEPTH", 101, "README.md:76", "--backbone resnet101"),
        Row("MODEL.RESNETS.STEM_TYPE", "basic", "encoding/dilated/resnet.py:141", "nn.Conv2d(3, 64, kernel_size=7, stride=2"),
        Row("MODEL.RESNETS.STEM_OUT_CHANNELS", 64, "encoding/dilated/resnet.py:141", "nn.Conv2d(3, 64, kernel_size=7"),
        Row("MODEL.RESNETS.STRIDE_IN_1X1", False, "encoding/dilated/resnet.py:72", "planes, planes, kernel_size=3, stride=stride"),
        Row("MODEL.RESNETS.RES4_DILATION", 2, "encoding/dilated/resnet.py:151", "dilation=2, norm_layer=norm_layer"),
        Row("MODEL.RESNETS.RES5_DILATION", 4, "encoding/dilated/resnet.py:153", "dilation=4,norm_layer=norm_layer"),
        # The first block of a dilation-2 stage has dilation 1.
        Row("MODEL.RESNETS.CONTRACT_DILATION", True, "encoding/dilated/resnet.py:187", "if dilation == 1 or dilation == 2:"),
        # --multi-grid --multi-dilation 4 8 16: res5's blocks 4, 8, 16 = 4 x (1, 2, 4).
        Row("MODEL.RESNETS.RES5_MULTI_GRID", [1, 2, 4], "README.md:76", "--multi-grid --multi-dilation 4 8 16"),
        Row("MODEL.RESNETS.NORM", "SyncBN", "danet/train.py:61", "norm_layer=BatchNorm2d"),
        Row("MODEL.SEM_SEG_HEAD.NORM", "SyncBN", "danet/train.py:61", "norm_layer=BatchNorm2d"),
        Row("MODEL.DANET.BRANCH_REDUCTION", 4, "encoding/models/danet.py:61", "inter_channels = in_channels // 4"),
        Row("MODEL.DANET.KEY_REDUCTION", 8, "encoding/nn/attention.py:26", "out_channels=in_dim//8"),
        Row("MODEL.DANET.POSITION_ATTENTION", "qkv", "encoding/nn/attention.py:28", "self.value_conv = Conv2d("),
        Row("MODEL.DANET.DROPOUT", 0.1, "encoding/models/danet.py:79", "nn.Dropout2d(0.1, False)"),
        # Plain nn.Conv2d layers, never re-initialised: PyTorch's defaults.
        Row("MODEL.DANET.HEAD_INIT", "pytorch", "encoding/models/danet.py:62", "nn.Conv2d(in_channels, inter_channels, 3, padding=1, bias=False)"),
        Row("MODEL.DANET.ALIGN_CORNERS", True, "encoding/models/base.py:21", "'align_corners': True"),
        # loss = CE(fused) + CE(position) + CE(channel); their DANet has no auxlayer.
        Row("MODEL.SEM_SEG_HEAD.LOSS_WEIGHT", 1.0, "encoding/nn/customize.py:106", "loss = loss1 + loss2 + loss3"),
        Row("MODEL.DANET.POSITION_LOSS_WEIGHT", 1.0, "encoding/nn/customize.py:106", "loss = loss1 + loss2 + loss3"),
        Row("MODEL.DANET.CHANNEL_LOSS_WEIGHT", 1.0, "encoding/nn/customize.py:106", "loss = loss1 + loss2 + loss3"),
        # torch's CrossEntropyLoss(size_average=True, ignore_index=-1): the mean over the labelled pixels.
        Row("MODEL.DANET.LOSS_AVERAGE", "valid_pixels", "encoding/nn/customize.py:92", "size_average=True, ignore_index=-1"),
        Row("MODEL.DANET.AUX.ENABLED", False, "danet/train.py:77", "SegmentationMultiLosses(nclass=self.nclass)"),
        # Labels 255 become -1, their ignore_index.
        Row("MODEL.SEM_SEG_HEAD.IGNORE_VALUE", 255, "encoding/datasets/cityscapes.py:67", "target[target == 255] = -1"),
        Row("MODEL.PIXEL_MEAN", [123.675, 116.28, 103.53], "danet/train.py:40", "Normalize([.485, .456, .406]"),
        Row("MODEL.PIXEL_STD", [58.395, 57.12, 57.375], "danet/train.py:40", "[.229, .224, .225]"),
        Row("INPUT.FORMAT", "RGB", "encoding/datasets/cityscapes.py:40", "convert('RGB')"),
        Row("SOLVER.MOMENTUM", 0.9, "danet/option.py:55", "'--momentum', type=float, default=0.9"),
        Row("SOLVER.NESTEROV", False, "danet/train.py:73", "torch.optim.SGD(params_list"),
        Row("SOLVER.WEIGHT_DECAY", 1e-4, "danet/option.py:57", "'--weight-decay', type=float, default=1e-4"),
        # torch's SGD applies weight_decay to every parameter of its groups: norms and biases too.
        Row("SOLVER.WEIGHT_DECAY_NORM", 1e-4, "danet/train.py:76", "weight_decay=args.weight_decay)"),
        Row("SOLVER.WEIGHT_DECAY_BIAS", None, "danet/train.py:76", "weight_decay=args.weight_decay)"),
        Row("SOLVER.BIAS_LR_FACTOR", 1.0, "danet/train.py:68", "params_list = [{'params': model.pretrained.parameters(), 'lr': args.lr},]"),
        Row("SOLVER.HEAD_LR_FACTOR", 10.0, "danet/train.py:70", "model.head.parameters(), 'lr': args.lr*10"),
        # lr = base * (1 - T / N)^0.9 at iteration T of N, set before each step; no warm-up.
        Row("SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "encoding/utils/lr_scheduler.py:49", "pow((1 - 1.0 * T / self.N), 0.9)"),
        Row("SOLVER.POLY_LR_POWER", 0.9, "encoding/utils/lr_scheduler.py:49", "pow((1 - 1.0 * T / self.N), 0.9)"),
        Row("SOLVER.POLY_LR_CONSTANT_ENDING", 0.0, "encoding/utils/lr_scheduler.py:49", "pow((1 - 1.0 * T / self.N), 0.9)"),
        Row("SOLVER.WARMUP_ITERS", 0, "encoding/utils/lr_scheduler.py:30", "warmup_epochs=0"),
        Row("INPUT.RANDOM_FLIP", "horizontal", "encoding/datasets/base.py:72", "if random.random() < 0.5:"),
        # The short side is drawn, the long side follows; no cap.
        Row("INPUT.RESIZE_TYPE", "shortest_edge", "encoding/datasets/base.py:77", "short_size = random.randint("),
        Row("INPUT.MIN_SIZE_TRAIN_SAMPLING", "range", "encoding/datasets/base.py:77", "random.randint(int(self.base_size*0.75)"),
        Row("INPUT.MAX_SIZE_TRAIN", 100000, "encoding/datasets/base.py:86", "ow = int(1.0 * w * oh / h)"),
        # A uniform random crop, padded with 0 (label: ignored) where the image is smaller.
        Row("INPUT.CROP.ENABLED", True, "encoding/datasets/base.py:101", "x1 = random.randint(0, w - crop_size)"),
        Row("INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", 1.0, "encoding/datasets/base.py:101", "x1 = random.randint(0, w - crop_size)"),
        Row("INPUT.PHOTOMETRIC_DISTORTION.ENABLED", False, "encoding/datasets/base.py:110", "return img, self._mask_transform(mask)"),
        # test.py --eval: MultiEvalModule with scale 1.0, flip, windows of the crop size.
        Row("TEST.AUG.ENABLED", True, "encoding/models/base.py:80", "flip=True"),
        Row("TEST.AUG.SCALES", [1.0], "encoding/models/base.py:87", "self.scales = [1.0]"),
        Row("TEST.AUG.FLIP", True, "encoding/models/base.py:80", "flip=True"),
        Row("TEST.AUG.AVERAGE", "logits", "encoding/models/base.py:187", "output += flip_image(foutput)"),
        Row("TEST.SLIDING_WINDOW.ENABLED", True, "encoding/models/base.py:117", "stride_rate = 2.0/3.0"),
    ]
# fmt: on


def size_rows(base_size, crop_size, test_base_size, source, snippet):
    """Their resize, crop and test sizes for --base-size, --crop-size (and the test's --base-size)."""
    stride = int(crop_size * 2 / 3)
    return [
        Row("INPUT.MIN_SIZE_TRAIN", [int(base_size * 0.75), int(base_size * 2.0)], source, snippet),
        Row("INPUT.CROP.SIZE", [crop_size, crop_size], source, snippet),
        # The test's long side becomes the base size: short side up to it, capped by it.
        Row(
            "INPUT.MIN_SIZE_TEST",
            test_base_size,
            "encoding/models/base.py:126",
            "long_size = int(math.ceil(self.base_size * scale))",
        ),
        Row(
            "INPUT.MAX_SIZE_TEST",
            test_base_size,
            "encoding/models/base.py:126",
            "long_size = int(math.ceil(self.base_size * scale))",
        ),
        Row("TEST.SLIDING_WINDOW.CROP_SIZE", [crop_size, crop_size], source, snippet),
        Row("TEST.SLIDING_WINDOW.STRIDE", [stride, stride], "encoding/models/base.py:117", "stride_rate = 2.0/3.0"),
    ]


def schedule_rows(dataset, epochs, lr, batch, batch_source, epochs_source, lr_source):
    """Batch, learning rate and their epochs of drop_last batches as iterations;
    each source a ("file:line", snippet)."""
    return [
        Row("SOLVER.IMS_PER_BATCH", batch, *batch_source),
        Row("SOLVER.BASE_LR", lr, *lr_source),
        Row("SOLVER.MAX_ITER", epochs * (TRAIN_IMAGES[dataset] // batch), *epochs_source),
    ]


def option_defaults(dataset, line):
    """option.py's epochs and learning rate (per 8 images) of ``dataset``, at the
    batch of its default on their 4 GPUs (4 images each)."""
    epochs = {"pascal_aug": 50, "pcontext": 80, "ade20k": 160, "cityscapes": 180}[dataset]
    lr_per_8 = {"pascal_aug": 0.001, "pcontext": 0.001, "ade20k": 0.01, "cityscapes": 0.01}[dataset]
    return schedule_rows(
        dataset, epochs, lr_per_8 / 8 * 16, 16,
        ("danet/option.py:121", "args.batch_size = 4 * torch.cuda.device_count()"),
        (f"danet/option.py:{line}", f"'{dataset}': {epochs}"),
        (f"danet/option.py:{line + 13}", f"'{dataset}': {lr_per_8}"),
    )  # fmt: skip


OPTION_SIZES = size_rows(608, 576, 608, "danet/option.py:28", "'--base-size', type=int, default=608")
README_COMMAND = "--base-size 1024 --crop-size 768 --epochs 240 --batch-size 8 --lr 0.003"

# configs/<file> -> the rows of the recipe it claims.
TABLES = {
    "official/Base-DANet-Authors.yaml": common_rows() + OPTION_SIZES + option_defaults("cityscapes", 117),
    "official/danet101_cityscapes.yaml": common_rows()
    + size_rows(1024, 768, 2048, "README.md:76", "--base-size 1024 --crop-size 768")
    + schedule_rows("cityscapes", 240, 0.003, 8, *[("README.md:76", README_COMMAND)] * 3),
    "ade20k/r101.yaml": common_rows() + OPTION_SIZES + option_defaults("ade20k", 116),
    "voc/r101.yaml": common_rows() + OPTION_SIZES + option_defaults("pascal_aug", 114),
    "pascal_context/r101.yaml": common_rows() + OPTION_SIZES + option_defaults("pcontext", 115),
    # No COCO-Stuff setting in their code: the recipe without its schedule (the header says so).
    "coco_stuff/r101.yaml": common_rows() + OPTION_SIZES,
}
