"""Every config that claims a published recipe holds that recipe's values, key by
key: mmsegmentation's runs as its own config files give them (tests/recipes_mmseg.py)
and the DANet authors' as their code does (tests/recipes_authors.py)."""

import glob
import math
import os
import subprocess

import pytest

import recipes_authors
import recipes_mmseg
from danet.config import load_config
from helpers import REPO
from mmseg_reference import REFERENCE_DIR, mmseg  # noqa: F401  (the mmseg fixture)
from weight_layouts import evaluation_checkpoint

MMSEG_DIR = os.path.join(REFERENCE_DIR, "mmseg")
MMSEG_CLAIMS = sorted(
    [
        os.path.relpath(p, os.path.join(REPO, "configs"))
        for p in glob.glob(os.path.join(REPO, "configs", "mmseg", "danet_*.yaml"))
    ]
    + list(recipes_mmseg.ALIASES)
)
# Configs that claim no published recipe of their own, and why.
NO_RECIPE = {
    "Base-DANet.yaml": "the network only",
    "base.yaml": "the original project's recipe (this project's history, README)",
    "original/r50.yaml": "the original project's recipe",
    "original/r101.yaml": "the original project's recipe",
    "demo.yaml": "the CPU demo",
    "mmseg/Base-DANet-Cityscapes.yaml": "checked through the mmseg runs that inherit it",
    "mmseg/Base-DANet-Cityscapes-769x769.yaml": "checked through the mmseg runs that inherit it",
    "mmseg/Base-DANet-512x512.yaml": "checked through the mmseg runs that inherit it",
}
# A git clone of github.com/junfu1115/DANet (bare or not), for test_authors_rows_cite_their_code.
AUTHORS_REPO = os.environ.get("DANET_AUTHORS_REPO", "")


def config_value(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def same(got, expected):
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=1e-12)
    if isinstance(expected, list) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(same(g, e) for g, e in zip(got, expected))
    return type(got) is type(expected) and got == expected


def mismatches(name, table):
    """The rows of ``table`` that configs/<name> does not hold, one line each."""
    cfg = load_config(os.path.join(REPO, "configs", name))
    wrong = []
    for row in table:
        try:
            got = config_value(cfg, row.key)
        except KeyError:
            wrong.append(f"{row.key}: not a key of this project ({row.source})")
            continue
        if not same(got, row.value):
            wrong.append(f"{row.key}: config {got!r}, recipe {row.value!r} ({row.source})")
    return wrong


def test_every_config_is_checked_against_the_recipe_it_claims():
    on_disk = {
        os.path.relpath(p, os.path.join(REPO, "configs"))
        for p in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
    }
    classified = set(MMSEG_CLAIMS) | set(recipes_authors.TABLES) | set(NO_RECIPE)
    assert on_disk == classified, "add each new config to a recipe table or to NO_RECIPE"
    assert not set(MMSEG_CLAIMS) & set(recipes_authors.TABLES)


@pytest.mark.parametrize("name", MMSEG_CLAIMS)
def test_config_holds_its_mmseg_run(name, mmseg):
    run = recipes_mmseg.claimed_runs(REPO, MMSEG_DIR)[name]
    config = recipes_mmseg.load_run_config(MMSEG_DIR, run)
    assert mismatches(name, recipes_mmseg.rows(run, config, MMSEG_DIR)) == []
    if name.startswith("mmseg/"):  # the header evaluates the run's published checkpoint
        assert evaluation_checkpoint(os.path.join(REPO, "configs", name)) == run["Weights"]
    # The auxiliary FCN head is the one this project builds: one 3x3 conv to a quarter of res4's channels.
    aux, head = config.model.auxiliary_head, config.model.decode_head
    assert (aux.num_convs, aux.concat_input, aux.in_channels // aux.channels) == (1, False, 4)
    assert (aux.dropout_ratio, aux.align_corners, aux.num_classes) == (
        head.dropout_ratio,
        head.align_corners,
        head.num_classes,
    )


@pytest.mark.parametrize("name", sorted(recipes_authors.TABLES))
def test_config_holds_the_authors_recipe(name):
    assert mismatches(name, recipes_authors.TABLES[name]) == []


def test_authors_rows_cite_their_code():
    """Each row's file:line at the cited commit holds its snippet (with the
    authors' repository at DANET_AUTHORS_REPO, a bare git directory)."""
    if not os.path.isdir(AUTHORS_REPO):
        if os.environ.get("DANET_REQUIRE_AUTHORS_REPO"):
            pytest.fail(f"DANET_AUTHORS_REPO {AUTHORS_REPO!r} is not a folder: set it to a clone of junfu1115/DANet")
        pytest.skip("set DANET_AUTHORS_REPO to a clone of junfu1115/DANet to check the cited lines")
    files = {}
    tables = recipes_authors.TABLES.values()
    rows = {(row.source, row.snippet): row for table in tables for row in table}
    wrong = []
    for row in rows.values():
        path, line = row.source.rsplit(":", 1)
        if path not in files:
            show = ["git", "-C", AUTHORS_REPO, "show", f"{recipes_authors.COMMIT}:{path}"]
            files[path] = subprocess.run(show, capture_output=True, text=True, check=True).stdout.splitlines()
        if row.snippet not in files[path][int(line) - 1]:
            wrong.append(f"{row.key}: {row.source} does not hold {row.snippet!r}")
    assert wrong == []
