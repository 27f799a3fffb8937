"""tools/visualize_attention.py and the attention pictures of evaluation: the rows
drawn are rows of the attention matrix, points land in the right feature cell,
bad input ends in one line, and the pictures are written."""

import importlib.util
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from helpers import BASE_CONFIG, REPO, TINY_MODEL_OPTS, one_line_error, register_toy_dataset, save_tiny_weights, tiny_cfg

from danet.errors import InputError
from danet.evaluation import attention_pictures_to_tensorboard
from danet.visualization import AttentionRecorder, grid_points

TOOL = os.path.join(REPO, "tools", "visualize_attention.py")
spec = importlib.util.spec_from_file_location("visualize_attention", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

spec = importlib.util.spec_from_file_location("train_net", os.path.join(REPO, "train_net.py"))
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def tiny_model(cfg, dtype=torch.float32):
    return build_model(cfg).eval().to(dtype)


def naive_attention_matrix(module, features):
    """The module's N x N attention matrix from the paper's formulas, and its
    output gamma * V A^T + X, in float64 from the convolution weights."""
    tokens = features.flatten(1)  # [C, N]
    if hasattr(module, "query"):
        query, key, value = (
            conv.weight[:, :, 0, 0] @ tokens + conv.bias[:, None] for conv in (module.query, module.key, module.value)
        )
    else:
        query = key = value = tokens
    energy = query.T @ key
    exp = torch.exp(energy - energy.max(dim=1, keepdim=True).values)
    matrix = exp / exp.sum(dim=1, keepdim=True)
    return matrix, module.gamma * (value @ matrix.T) + tokens


@pytest.mark.parametrize("position_attention", ["qkv", "seed"])
def test_rows_drawn_are_rows_of_the_naive_attention_matrix(position_attention):
    # 40x72 pixels at stride 8: a 5x9 feature map, odd in both directions.
    cfg = tiny_cfg(
        "INPUT.MIN_SIZE_TEST", 40,
        "MODEL.DANET.POSITION_ATTENTION", position_attention,
        "MODEL.DANET.ATTENTION_IMPL", "naive",
    )  # fmt: skip
    model = tiny_model(cfg, torch.float64)
    module = model.sem_seg_head.position_branch[1]
    module.gamma.data.fill_(0.7)
    # A random model's features make one-hot rows; scaled, they test more.
    rms = {"qkv": 1.0, "seed": 0.15}[position_attention]
    module.register_forward_pre_hook(lambda m, args: (args[0] * rms / args[0].pow(2).mean().sqrt(),))
    seen = {}
    module.register_forward_hook(lambda m, args, output: seen.update(input=args[0][0], output=output[0]))
    _, attention = tool.segment_with_attention(model, AttentionRecorder(model), random_image(40, 72), cfg)

    assert attention.feature_size == (5, 9) and attention.position_input.dtype == torch.float64
    matrix, output = naive_attention_matrix(module, seen["input"])
    # The oracle is the module's own attention: it reproduces the module's output.
    torch.testing.assert_close(output, seen["output"].flatten(1), rtol=0, atol=1e-10)
    assert 0.01 < matrix.max() < 0.9  # neither uniform nor one-hot
    cells = [(row, col) for row in range(5) for col in range(9)]
    rows = attention.position_rows(cells).flatten(1)
    torch.testing.assert_close(rows, matrix, rtol=0, atol=1e-10)
    torch.testing.assert_close(rows.sum(dim=1), torch.ones(45, dtype=torch.float64), rtol=0, atol=1e-10)
    # A few points at a time give the same rows (the tool computes only those).
    some = [(4, 8), (0, 0), (2, 5)]
    torch.testing.assert_close(attention.position_rows(some).flatten(1), matrix[[44, 0, 23]], rtol=0, atol=1e-10)


# (height, width) of the image -> the model's input after the test resize
# (shortest edge 48, longest at most 96) and the feature map at stride 8, and
# points (x, y) with their cell (row, col), worked out by hand:
#   60x100 -> 48x80 (x0.8), cells 6x10; pixel 9 ends at 10 * 0.8 = 8 = a cell border.
#   40x200 -> 48x240 -> 19.2x96, rounded 19x96 (x0.475 high, x0.48 wide), cells 3x12
#   (ceil(19 / 8) = 3); cell borders at 8 / 0.48 = 16.7 (x) and 8 / 0.475 = 16.8 (y).
RESIZE_CASES = [
    ((60, 100), (48, 80), (6, 10), {(9, 9): (0, 0), (10, 10): (1, 1), (50, 30): (3, 5), (99, 59): (5, 9)}),
    ((40, 200), (19, 96), (3, 12), {(0, 0): (0, 0), (17, 16): (0, 1), (16, 17): (1, 0), (199, 39): (2, 11)}),
]


@pytest.mark.parametrize("image_size, input_size, feature_size, cells", RESIZE_CASES)
def test_points_map_to_their_feature_cell(image_size, input_size, feature_size, cells):
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    _, attention = tool.segment_with_attention(model, AttentionRecorder(model), random_image(*image_size), cfg)
    assert attention.input_size == input_size and attention.feature_size == feature_size
    height, width = feature_size
    one_hot = torch.eye(height * width).reshape(-1, height, width)
    # In the pictures drawn, each point is where its own cell's map is strongest.
    strongest = attention.to_picture(one_hot, image_size).argmax(dim=0)
    for (x, y), (row, col) in cells.items():
        assert attention.cell((x, y), image_size) == (row, col)
        assert strongest[y, x] == row * width + col


def test_grid_points_are_centres_of_the_grid():
    assert grid_points((60, 100), 2) == [(25, 15), (75, 15), (25, 45), (75, 45)]
    assert grid_points((5, 7), 1) == [(3, 2)]


def run_tool(tmp_path, inputs, *args, opts=()):
    output = tmp_path / "out"
    argv = ["--config-file", BASE_CONFIG, "--input", *map(str, inputs), "--output", str(output), *args]
    weights = save_tiny_weights(tmp_path / "tiny_model.pth")
    return tool.main(argv + ["--opts", *TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights, *opts]), output


def panels(band):
    """(start, end) columns of the runs of non-white columns in a band of rows."""
    content = np.concatenate([[False], (band != 255).any(axis=(0, 2)), [False]])
    edges = np.flatnonzero(np.diff(content.astype(int)))
    return list(zip(edges[::2], edges[1::2]))


def test_tool_draws_attention_prediction_and_channels(tmp_path):
    Image.fromarray(random_image(60, 100, seed=1)).save(tmp_path / "street.png")
    Image.fromarray(random_image(40, 200, seed=2)).save(tmp_path / "wide.jpg")
    points = [(10, 20), (90, 35)]
    status, output = run_tool(
        tmp_path, [tmp_path / "street.png", tmp_path / "wide.jpg"], "--points", "10,20;90,35", "--channels", "3,0,7"
    )
    assert status == 0
    assert sorted(os.listdir(output)) == ["street_attention.png", "wide_attention.png"]
    for name, (height, width) in (("street", (60, 100)), ("wide", (40, 200))):
        picture = np.array(Image.open(output / f"{name}_attention.png"))
        assert picture.ndim == 3 and picture.shape[2] == 3
        # Heat maps have no white column: in the image rows of the first row the
        # points' maps come last, in those of the second row the three channels.
        point_panels = panels(picture[20 : 20 + height])[-2:]
        channel_panels = panels(picture[-height:])
        assert [end - start for start, end in point_panels] == [width, width]
        assert [end - start for start, end in channel_panels] == [width] * 3
        for (start, _), (x, y) in zip(point_panels, points):
            assert (picture[20 + y, start + x] == 255).all()  # the centre of the point's white cross


def test_bad_points_and_unreadable_images_are_reported_in_one_line(tmp_path, capsys):
    Image.fromarray(random_image(30, 40)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    status, output = run_tool(tmp_path, [tmp_path / "small.png", tmp_path / "broken.png"], "--points", "10,10;45,5")
    assert status == 1 and os.listdir(output) == []
    lines = capsys.readouterr().err.splitlines()
    assert any(
        line.startswith(f"Skipped {tmp_path / 'small.png'}: point (45, 5) is outside the image (40x30")
        for line in lines
    )
    assert any(line.startswith(f"Skipped {tmp_path / 'broken.png'}: not a readable image") for line in lines)


def test_config_without_danet_head_ends_in_one_line(tmp_path):
    Image.fromarray(random_image(30, 40)).save(tmp_path / "small.png")
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tmp_path, [tmp_path / "small.png"], opts=["MODEL.SEM_SEG_HEAD.NAME", "SemSegFPNHead"])
    message = str(exit_info.value.code)
    assert "\n" not in message and message.startswith("visualize_attention.py: error:")
    assert "no DANet head" in message and "MODEL.SEM_SEG_HEAD.NAME is 'SemSegFPNHead'" in message


def test_channels_out_of_range_end_in_one_line_before_any_image_runs(tmp_path, monkeypatch):
    Image.fromarray(random_image(30, 40)).save(tmp_path / "small.png")
    monkeypatch.setattr(tool, "segment_with_attention", None)  # never reached
    # The tiny model's branches have 512 / 4 = 128 channels.
    message = one_line_error(lambda: run_tool(tmp_path, [tmp_path / "small.png"], "--channels", "3,128"))
    assert message == (
        "visualize_attention.py: error: --channels 3,128: this model's channel attention has channels 0..127"
    )
    assert os.listdir(tmp_path / "out") == []


def test_a_model_without_danet_head_is_refused_by_the_recorder():
    model = build_model(tiny_cfg("MODEL.SEM_SEG_HEAD.NAME", "SemSegFPNHead"))
    with pytest.raises(InputError, match="no DANet head"):
        AttentionRecorder(model)


def test_a_forward_that_failed_leaves_no_records_for_the_next_image():
    """A tool that reports a failed image and goes on (cli.for_each_image) must not
    draw the next image with the failed one's attention."""
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    recorder = AttentionRecorder(model)

    def refuse(module, args, output):
        raise InputError("refused")

    handle = model.sem_seg_head.channel_branch[1].register_forward_hook(refuse)
    with pytest.raises(InputError):
        tool.segment_with_attention(model, recorder, random_image(64, 96), cfg)
    handle.remove()
    _, attention = tool.segment_with_attention(model, recorder, random_image(32, 32, seed=1), cfg)
    _, expected = tool.segment_with_attention(model, AttentionRecorder(model), random_image(32, 32, seed=1), cfg)
    assert attention.input_size == expected.input_size
    torch.testing.assert_close(attention.position_input, expected.position_input, rtol=0, atol=0)


@pytest.mark.parametrize("args", [["--points", "10;20"], ["--points", "a,b"], ["--grid", "0"], ["--channels", "x"]])
def test_malformed_arguments_end_in_a_usage_error(tmp_path, args, capsys):
    Image.fromarray(random_image(30, 40)).save(tmp_path / "small.png")
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tmp_path, [tmp_path / "small.png"], *args)
    assert exit_info.value.code == 2 and args[0] in capsys.readouterr().err


def test_evaluation_writes_attention_pictures_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    register_toy_dataset(tmp_path / "data", "toy_attention_pictures", num_images=3)
    output = tmp_path / "output"
    args = default_argument_parser().parse_args(
        ["--config-file", BASE_CONFIG, "--eval-only"]
        + TINY_MODEL_OPTS
        + ["DATASETS.TEST", "('toy_attention_pictures',)", "OUTPUT_DIR", str(output), "TEST.ATTENTION_PICTURES", "2"]
        + ["MODEL.WEIGHTS", save_tiny_weights(tmp_path / "tiny_model.pth")]
    )
    train_net.main(args)
    events = EventAccumulator(str(output), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["attention/image_0", "attention/image_1"]
    (event,) = events.Images("attention/image_0")
    picture = np.array(Image.open(io.BytesIO(event.encoded_image_string)))
    # Two rows of (caption + 48-pixel image); 4 point maps + the prediction, 4 channels.
    assert picture.shape[0] >= 2 * (20 + 48) and picture.shape[1] >= 5 * 64
    assert [end - start for start, end in panels(picture[20 : 20 + 48])[-4:]] == [64] * 4
    assert [end - start for start, end in panels(picture[-48:])] == [64] * 4


def test_attention_pictures_go_to_the_trainers_storage_and_only_when_asked(tmp_path):
    register_toy_dataset(tmp_path / "data", "toy_attention_storage", num_images=1)
    inputs = [{"image": torch.as_tensor(random_image(48, 64).transpose(2, 0, 1).copy()), "height": 48, "width": 64}]
    for count in (0, 1):
        output = str(tmp_path / str(count))
        cfg = tiny_cfg(
            "DATASETS.TEST", "('toy_attention_storage',)", "OUTPUT_DIR", output, "TEST.ATTENTION_PICTURES", count
        )
        model = tiny_model(cfg)
        with EventStorage(start_iter=7) as storage, torch.no_grad():
            with attention_pictures_to_tensorboard(cfg, model):
                model(inputs)
        assert not (tmp_path / str(count)).exists()  # in training the trainer's writer saves them
        assert [(name, step) for name, _, step in storage._vis_data] == [("attention/0", 7)] * count
