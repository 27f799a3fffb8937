"""The conventions every command-line tool shares (danet/cli.py): config
overrides as trailing KEY VALUE pairs and after --opts, --input and --output
checked before any model is built, one-line errors."""
import argparse
import os

import numpy as np
import pytest
from PIL import Image

from helpers import BASE_CONFIG, TINY_MODEL_OPTS, free_port, load_script, one_line_error, save_tiny_weights

from danet.cli import add_config_arguments, add_image_arguments, parse_args

TOOLS = {
    name: load_script(path)
    for name, path in {
        "demo.py": "demo.py",
        "export_model.py": "tools/export_model.py",
        "visualize_attention.py": "tools/visualize_attention.py",
        "analyze_model.py": "tools/analyze_model.py",
        "segment_exported.py": "tools/segment_exported.py",
        "convert_weights.py": "tools/convert_weights.py",
        "web_demo.py": "tools/web_demo.py",
    }.items()
}
CONFIG_TOOLS = ("demo.py", "export_model.py", "visualize_attention.py", "analyze_model.py", "web_demo.py")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return str(path)


def tool_argv(name, image, output):
    """The tool's required arguments, --input (if any) last."""
    return {
        "demo.py": ["--config-file", BASE_CONFIG, "--output", output, "--input", image],
        "visualize_attention.py": ["--config-file", BASE_CONFIG, "--output", output, "--input", image],
        "export_model.py": ["--config-file", BASE_CONFIG, "--format", "torchscript", "--output", output,
                            "--size", "48", "64"],
        "analyze_model.py": ["--config-file", BASE_CONFIG, "--size", "48", "64"],
        "web_demo.py": ["--config-file", BASE_CONFIG, "--output", output, "--port", "0"],
        "segment_exported.py": ["--model", os.path.join(output, "model.ts"), "--output", output, "--input", image],
    }[name]  # fmt: skip


def overrides(name, opts, form):
    """``opts`` as trailing pairs (after `--` where --input comes last) or after --opts."""
    if form == "--opts":
        return ["--opts", *opts]
    return ["--", *opts] if name in ("demo.py", "visualize_attention.py") else list(opts)


def config_parser(with_images):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    if with_images:
        add_image_arguments(parser, output_help="")
    return parser


@pytest.mark.parametrize(
    "argv, opts",
    [
        (["--config-file", "c.yaml", "A.B", "1", "C.D", "2"], ["A.B", "1", "C.D", "2"]),
        (["--config-file", "c.yaml", "--opts", "A.B", "1"], ["A.B", "1"]),
        (["--config-file", "c.yaml", "A.B", "1", "--opts", "C.D", "2"], ["A.B", "1", "C.D", "2"]),
        (["--config-file", "c.yaml", "--output", "o", "--input", "x.png", "y.png", "--", "A.B", "1"], ["A.B", "1"]),
        (["--input", "x.png", "--config-file", "c.yaml", "--output", "o", "A.B", "1"], ["A.B", "1"]),
        (["--config-file", "c.yaml", "--output", "o", "--input", "x.png"], []),
    ],
)
def test_overrides_are_read_both_ways(argv, opts):
    args = parse_args(config_parser(with_images="--input" in argv), argv)
    assert args.opts == opts
    assert not hasattr(args, "flag_opts")


def test_an_option_after_the_trailing_pairs_is_named(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(config_parser(with_images=False), ["--config-file", "c.yaml", "A.B", "1", "--random-weights"])
    assert exit_info.value.code == 2
    assert "--random-weights follows the config overrides: give options before the KEY VALUE pairs" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("form", ["trailing", "--opts"])
@pytest.mark.parametrize("name", CONFIG_TOOLS)
def test_every_tool_takes_overrides_both_ways(name, form, image, tmp_path):
    """A wrong key reaches load_config (one line naming it) in both forms."""
    argv = tool_argv(name, image, str(tmp_path / "out")) + overrides(name, ["MODEL.NOT_A_KEY", "1"], form)
    message = one_line_error(lambda: TOOLS[name].main(argv))
    assert message.startswith(f"{name}: error: Command-line override: ") and "MODEL.NOT_A_KEY" in message


@pytest.mark.parametrize("name", ["demo.py", "visualize_attention.py", "export_model.py"])
def test_trailing_overrides_run_the_tool(name, image, tmp_path):
    """The --opts form runs in each tool's own tests; the trailing one here."""
    weights = save_tiny_weights(tmp_path / "tiny.pth")
    output = tmp_path / "out"
    argv = tool_argv(name, image, str(output)) + overrides(name, [*TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights], "trailing")
    assert TOOLS[name].main(argv) == 0
    written = {"demo.py": "frame_pred.png", "visualize_attention.py": "frame_attention.png", "export_model.py": "model.ts"}
    assert os.path.isfile(output / written[name])


def test_analyze_model_takes_opts(capsys):
    TOOLS["analyze_model.py"].main(tool_argv("analyze_model.py", "", "") + ["--opts", *TINY_MODEL_OPTS])
    assert capsys.readouterr().out.startswith("Input 48 x 64:")


@pytest.mark.parametrize("name", ["demo.py", "visualize_attention.py"])
def test_overrides_after_input_without_separator_are_named(name, image, tmp_path):
    argv = tool_argv(name, image, str(tmp_path / "out")) + ["MODEL.WEIGHTS", "model.pth"]
    message = one_line_error(lambda: TOOLS[name].main(argv))
    assert message == (
        f"{name}: error: --input 'MODEL.WEIGHTS' looks like a config key: --input takes many values, so put "
        "config overrides after `--` (--input a.png -- KEY VALUE) or after --opts"
    )


@pytest.mark.parametrize("name", ["demo.py", "visualize_attention.py", "export_model.py", "segment_exported.py"])
def test_output_naming_a_file_is_one_line(name, image, tmp_path):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    argv = tool_argv(name, image, str(existing)) + (["--opts", *TINY_MODEL_OPTS] if name != "segment_exported.py" else [])
    message = one_line_error(lambda: TOOLS[name].main(argv))
    assert message == f"{name}: error: --output {str(existing)!r} is a file: give a folder (it is created when missing)"
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize("name", ["demo.py", "segment_exported.py"])
@pytest.mark.parametrize("value", ["1.5", "-0.1", "x"])
def test_confidence_threshold_outside_zero_one_is_a_usage_error(name, value, image, tmp_path, capsys):
    argv = tool_argv(name, image, str(tmp_path / "out"))
    with pytest.raises(SystemExit) as exit_info:
        TOOLS[name].main(argv[:-2] + ["--confidence-threshold", value] + argv[-2:])
    assert exit_info.value.code == 2
    assert f"--confidence-threshold: expected a number in [0, 1], got '{value}'" in capsys.readouterr().err


def test_convert_weights_names_a_url_it_cannot_download(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/resnet50-0676ba61.pth"  # nothing listens there
    message = one_line_error(lambda: TOOLS["convert_weights.py"].main([url, str(tmp_path / "r50.pth")]))
    assert message.startswith(f"convert_weights.py: error: SRC {url}: cannot download it (")
    assert "download it on a machine with network and give SRC the file" in message
    assert not os.path.exists(tmp_path / "r50.pth")


def test_convert_weights_names_a_folder_given_as_destination(tmp_path):
    weights = save_tiny_weights(tmp_path / "tiny.pth")
    message = one_line_error(lambda: TOOLS["convert_weights.py"].main([weights, str(tmp_path)]))
    assert message == (
        f"convert_weights.py: error: DST {str(tmp_path)!r} is a folder: give the file to write, such as "
        f"{tmp_path / 'model.pth'}"
    )
