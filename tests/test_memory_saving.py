"""Memory-saving training (MODEL.DANET.MEMORY_SAVING*): the same training
trajectory as without it (weights, gradients, BN running statistics), less
memory held for the backward, unchanged checkpoints, DDP on two CPU processes."""
import contextlib
import copy

import pytest
import torch

from detectron2.modeling import build_model

from helpers import tiny_cfg
from benchmarks.memory import saved_activation_bytes
from danet.errors import InputError
from danet.modeling import apply_memory_saving, memory_saving
from danet.modeling.memory_saving import HEAD_PARTS
from test_training_reliability import last_metrics, train_net

SIZE = 48


def build_pair(*opts):
    """The tiny DANet (with its aux head) twice with the same weights: without
    and with every part checkpointed (MEMORY_SAVING True and the head branches)."""
    cfg = tiny_cfg("MODEL.DANET.AUX.ENABLED", "True", "MODEL.DANET.DROPOUT", "0.0", *opts)
    torch.manual_seed(0)
    plain = build_model(cfg)
    # Start the attention modules away from the identity, so they count.
    for module in plain.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.5)
    saving_cfg = cfg.clone()
    saving_cfg.MODEL.DANET.MEMORY_SAVING = True
    saving_cfg.MODEL.DANET.MEMORY_SAVING_CHECKPOINT = list(HEAD_PARTS)
    return plain, apply_memory_saving(copy.deepcopy(plain), saving_cfg)


def batch(seed):
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (3, SIZE, SIZE), generator=generator, dtype=torch.uint8).float(),
            "sem_seg": torch.randint(0, 19, (SIZE, SIZE), generator=generator),
        }
        for _ in range(2)
    ]


def train(model, steps):
    """SGD steps on fixed random batches; the gradients of the last step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        sum(model(batch(step)).values()).backward()
        gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
    return gradients


def assert_close(expected, actual, what):
    assert expected.keys() == actual.keys()
    for name in expected:
        if expected[name].is_floating_point():
            torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-5, msg=f"{what} {name}")
        else:
            assert torch.equal(actual[name], expected[name]), f"{what} {name}"


def test_training_with_savings_matches_training_without():
    plain, saving = build_pair()
    expected_gradients, gradients = train(plain, 3), train(saving, 3)
    assert len(gradients) == len(list(plain.parameters()))
    assert_close(expected_gradients, gradients, "gradient")
    # Weights and BN running mean, variance and batch counts: the recompute updated nothing.
    assert_close(plain.state_dict(), saving.state_dict(), "state")
    assert saving.backbone.res4[0].conv1.norm.num_batches_tracked.item() == 3


def test_recompute_without_restoring_buffers_would_update_bn_twice(monkeypatch):
    """The test above can fail: without restored_buffers the running statistics drift."""
    monkeypatch.setattr(memory_saving, "restored_buffers", lambda module: contextlib.nullcontext())
    plain, saving = build_pair()
    train(plain, 2), train(saving, 2)
    norm = "backbone.res5.0.conv1.norm"
    assert saving.state_dict()[f"{norm}.num_batches_tracked"].item() == 4
    assert not torch.allclose(saving.state_dict()[f"{norm}.running_var"], plain.state_dict()[f"{norm}.running_var"])


def saved_bytes(model):
    """Bytes of the activations one training step keeps for the backward."""
    model.train()
    return saved_activation_bytes(model, lambda: model(batch(0)))


def test_checkpointing_keeps_far_less_for_the_backward():
    plain, saving = build_pair()
    assert saved_bytes(saving) < 0.3 * saved_bytes(plain)


def test_parts_are_selectable_and_checked():
    plain, every_part = build_pair()
    res5_only = tiny_cfg("MODEL.DANET.MEMORY_SAVING_CHECKPOINT", '["res5"]')
    partial = apply_memory_saving(copy.deepcopy(plain), res5_only)
    switch = apply_memory_saving(copy.deepcopy(plain), tiny_cfg("MODEL.DANET.MEMORY_SAVING", "True"))
    # The switch alone leaves the head branches out; MEMORY_SAVING_CHECKPOINT adds them.
    assert saved_bytes(every_part) < saved_bytes(switch) < saved_bytes(partial) < saved_bytes(plain)
    with pytest.raises(InputError, match=r"MEMORY_SAVING_CHECKPOINT: unknown part\(s\) \['res6'\]"):
        apply_memory_saving(plain, tiny_cfg("MODEL.DANET.MEMORY_SAVING_CHECKPOINT", '["res6"]'))


def test_checkpoints_load_the_same_with_savings_on_or_off(tmp_path):
    plain, saving = build_pair()
    train(saving, 1)
    assert list(saving.state_dict()) == list(plain.state_dict())
    torch.save(saving.state_dict(), tmp_path / "saving.pth")
    plain.load_state_dict(torch.load(tmp_path / "saving.pth", weights_only=True))
    assert_close(saving.state_dict(), plain.state_dict(), "loaded")
    # Inference is untouched: no recompute without gradients.
    plain.eval(), saving.eval()
    with torch.no_grad():
        torch.testing.assert_close(saving(batch(5))[0]["sem_seg"], plain(batch(5))[0]["sem_seg"])


def test_savings_under_bf16_autocast():
    plain, saving = build_pair()
    gradients = []
    for model in (plain, saving):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model(batch(0))
        sum(losses.values()).backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    # The recompute runs under the forward's autocast state: the same bf16 operations.
    assert_close(*gradients, "bf16 gradient")


def test_two_cpu_processes_train_with_savings_like_without(toy_cityscapes, tmp_path):
    """DDP (gloo) with naiveSyncBN: the recompute's all-reduces pair up across
    processes, and the weights and statistics end as without checkpointing."""
    opts = ["SOLVER.MAX_ITER", "3", "SEED", "3", "DATALOADER.NUM_WORKERS", "0",
            "MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN", "MODEL.DANET.DROPOUT", "0.0"]
    flags = ["--num-gpus", "2", "--dist-url", "auto"]
    states = {}
    for saving in ("False", "True"):
        output_dir = tmp_path / saving
        every_part = ["MODEL.DANET.MEMORY_SAVING_CHECKPOINT", str(list(HEAD_PARTS)) if saving == "True" else "[]"]
        run = train_net(toy_cityscapes["datasets"], output_dir, *opts, "MODEL.DANET.MEMORY_SAVING", saving,
                        *every_part, flags=flags)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert last_metrics(output_dir)["iteration"] == 2
        states[saving] = torch.load(output_dir / "model_final.pth", weights_only=False)["model"]
    assert_close(states["False"], states["True"], "DDP state")
