"""Bad config, weights and devices end in one-line errors; checkpoints are crash-safe."""
import os

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.utils import comm

from helpers import NARROW_RESNET, REPO, cpu_cfg, run_train_net_script
from danet.checkpoint import CheckpointError, SafeCheckpointer
from danet.config import load_config as load_user_config
from danet.engine import adapt_to_device
from danet.errors import InputError, MissingInputError


@pytest.mark.parametrize(
    "opts, expected",
    [
        (["MODEL.DANET.NO_SUCH_KEY", "1"], "MODEL.DANET.NO_SUCH_KEY"),
        (["SOLVER.MAX_ITER", "many"], "SOLVER.MAX_ITER"),
        (["SOLVER.MAX_ITER"], "'SOLVER.MAX_ITER' has no value"),
    ],
)
def test_bad_override_is_one_line_naming_the_key(opts, expected):
    with pytest.raises(SystemExit) as exit:
        run_train_net_script("--config-file", os.path.join(REPO, "configs", "r50.yaml"), *opts)
    message = str(exit.value.code)
    assert message.startswith("train_net.py: error:") and expected in message and "\n" not in message


def test_unknown_key_in_config_file_names_file_and_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f'_BASE_: "{REPO}/configs/r50.yaml"\nMODEL:\n  DANET:\n    GAMA: 1\n')
    with pytest.raises(InputError, match=r"bad.yaml.*MODEL.DANET.GAMA"):
        load_user_config(str(config))


def test_missing_config_file_is_named():
    with pytest.raises(InputError, match="configs/nope.yaml"):
        load_user_config("configs/nope.yaml")


def test_cuda_device_without_gpu_says_what_to_do():
    cfg = cpu_cfg("r50.yaml", "MODEL.DEVICE", "cuda")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="MODEL.DEVICE cpu"):
        adapt_to_device(cfg)


def test_sync_bn_becomes_naive_sync_bn_in_cpu_processes(monkeypatch):
    cfg = cpu_cfg("r50.yaml", "MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN")
    adapt_to_device(cfg)
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.SEM_SEG_HEAD.NORM) == ("SyncBN", "SyncBN")
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    adapt_to_device(cfg)
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.SEM_SEG_HEAD.NORM) == ("naiveSyncBN", "naiveSyncBN")


def small_model(*opts):
    return build_model(cpu_cfg("original/r50.yaml", *NARROW_RESNET, *opts))


def test_missing_weights_file_is_named(tmp_path):
    checkpointer = SafeCheckpointer(small_model(), save_dir=str(tmp_path))
    with pytest.raises(MissingInputError, match="missing.pth.*MODEL.WEIGHTS"):
        checkpointer.load(str(tmp_path / "missing.pth"))


def test_weights_of_another_shape_report_the_keys(tmp_path):
    SafeCheckpointer(small_model(), save_dir=str(tmp_path)).save("nineteen_classes")
    other = small_model("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 7)
    with pytest.raises(CheckpointError, match=r"sem_seg_head.fused_predictor.1.weight \(19, .*\) vs model \(7, "):
        SafeCheckpointer(other, save_dir=str(tmp_path)).load(str(tmp_path / "nineteen_classes.pth"))


def test_checkpoint_roundtrip_and_tag(tmp_path):
    model = small_model()
    checkpointer = SafeCheckpointer(model, save_dir=str(tmp_path))
    checkpointer.save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not list(tmp_path.glob("*.tmp"))
    clone = small_model()
    extra = SafeCheckpointer(clone, save_dir=str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    for (name, a), b in zip(model.state_dict().items(), clone.state_dict().values()):
        assert torch.equal(a, b), name


def test_kill_while_saving_keeps_last_checkpoint_usable(tmp_path, monkeypatch):
    checkpointer = SafeCheckpointer(small_model(), save_dir=str(tmp_path))
    checkpointer.save("model_0000004")
    good = (tmp_path / "model_0000004.pth").read_bytes()

    def killed_mid_write(data, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # stands in for SIGKILL during torch.save

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000004")  # re-saving the file the tag points to
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000009")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert (tmp_path / "model_0000004.pth").read_bytes() == good
    assert not (tmp_path / "model_0000009.pth").exists()
