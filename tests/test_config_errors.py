"""Config files and top-level keys: a YAML syntax error or a missing _BASE_ is
one line naming the file; LOG_PERIOD sets how often training is logged; keys
that the built model would ignore are refused."""
import json

import pytest

import train_net
from detectron2.engine import default_argument_parser

from danet.config import load_config
from danet.errors import InputError
from helpers import BASE_CONFIG, TINY_MODEL_OPTS, one_line_error, register_toy_dataset, run_train_net_script
from test_hardening_train_net import TINY_TRAINING


def write(path, text):
    path.write_text(text)
    return str(path)


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    config = write(tmp_path / "bad.yaml", f'_BASE_: "{BASE_CONFIG}"\nMODEL:\n  WEIGHTS: [unclosed\n')
    message = one_line_error(lambda: run_train_net_script("--config-file", config))
    assert message.startswith(f"train_net.py: error: {config}:4:1: not valid YAML (expected ',' or ']'")


def test_yaml_syntax_error_in_a_base_names_the_base(tmp_path):
    base = write(tmp_path / "base.yaml", "MODEL:\n WEIGHTS: ''\n  DEVICE: cpu\n")
    config = write(tmp_path / "child.yaml", '_BASE_: "base.yaml"\n')
    with pytest.raises(InputError, match=rf"^{base}:3:3: not valid YAML \(expected <block end>"):
        load_config(config)


def test_missing_base_names_it(tmp_path):
    config = write(tmp_path / "child.yaml", '_BASE_: "../configs/nonexistent.yaml"\n')
    message = one_line_error(lambda: run_train_net_script("--config-file", config))
    missing = tmp_path.parent / "configs" / "nonexistent.yaml"  # fvcore normalises the path
    assert message == (
        f"train_net.py: error: {config}: its _BASE_ {missing} does not exist: "
        "fix the _BASE_ path (relative to the file that names it)"
    )


@pytest.mark.parametrize("value", ["0", "-5"])
def test_log_period_below_one_is_refused(value):
    with pytest.raises(InputError, match=f"LOG_PERIOD must be a number of iterations >= 1, got {value}"):
        load_config(BASE_CONFIG, ["LOG_PERIOD", value])


def test_memory_saving_with_a_meta_architecture_that_ignores_it_is_refused():
    opts = ["MODEL.META_ARCHITECTURE", "SemanticSegmentor", "MODEL.DANET.MEMORY_SAVING", "True"]
    with pytest.raises(InputError, match=r"MEMORY_SAVING needs MODEL.META_ARCHITECTURE \"DANetSegmentor\".*'SemanticSegmentor'"):
        load_config(BASE_CONFIG, opts)


def test_log_period_sets_how_often_training_is_logged(tmp_path):
    register_toy_dataset(tmp_path / "data", "toy_log_period")
    output = tmp_path / "output"
    args = default_argument_parser().parse_args(
        ["--config-file", BASE_CONFIG, *TINY_MODEL_OPTS, *TINY_TRAINING, "SOLVER.MAX_ITER", "3", "LOG_PERIOD", "1",
         "OUTPUT_DIR", str(output), "DATASETS.TRAIN", "('toy_log_period',)", "DATASETS.TEST", "()"]
    )  # fmt: skip
    train_net.main(args)
    with open(output / "metrics.json") as f:
        logged = [m["iteration"] for m in map(json.loads, f) if "total_loss" in m]
    assert logged == [0, 1, 2]  # detectron2's fixed period of 20 logs only the last
