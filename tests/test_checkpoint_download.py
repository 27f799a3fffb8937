"""MODEL.WEIGHTS given by URL, served for real by an HTTP server on 127.0.0.1:
downloaded once into detectron2's cache ($FVCORE_CACHE), checked against its
length and the SHA-256 prefix of its file name, and a one-line error when the
download fails or is damaged, which then leaves nothing in the cache."""
import hashlib

import pytest
import torch

from danet.checkpoint import CheckpointError
from danet.engine import build_inference_model
from helpers import free_port, http_server, save_tiny_weights, tiny_cfg


@pytest.fixture
def server():
    with http_server() as server:
        yield server


@pytest.fixture
def cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FVCORE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny model's checkpoint, its bytes and their SHA-256 prefix."""
    path = save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pth")
    with open(path, "rb") as f:
        data = f.read()
    return path, data, hashlib.sha256(data).hexdigest()[:8]


def load(url):
    return build_inference_model(tiny_cfg("MODEL.WEIGHTS", url))


def cached_files(cache):
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_checkpoint_by_url_loads_and_is_cached(server, cache, weights):
    path, data, sha = weights
    url = server.serve(f"/models/danet/tiny_20240101-{sha}.pth", data)
    model = load(url)
    expected = torch.load(path, weights_only=True)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    cached = cache / "models" / "danet" / f"tiny_20240101-{sha}.pth"
    assert cached.read_bytes() == data and cached_files(cache) == [cached.name]
    # From the cache: the server no longer has it.
    server.files.clear()
    load(url)


@pytest.mark.parametrize("damage", ["altered", "truncated", "truncated without a hash"])
def test_damaged_download_is_named_and_not_cached(server, cache, weights, damage):
    _, data, sha = weights
    if damage == "altered":
        body = bytearray(data)
        body[len(body) // 2] ^= 0xFF
        url = server.serve(f"/tiny-{sha}.pth", bytes(body))
        expected = rf"download is altered or incomplete \(its SHA-256 starts with [0-9a-f]{{8}}, its file name says {sha}\)"
    else:
        name = f"/tiny-{sha}.pth" if damage == "truncated" else "/tiny.pth"
        url = server.serve(name, data[: len(data) // 2], length=len(data))
        expected = rf"download is truncated \({len(data) // 2} of {len(data)} bytes\)"
    with pytest.raises(CheckpointError, match=expected) as error:
        load(url)
    message = str(error.value)
    assert url in message and "nothing was cached" in message and "\n" not in message
    assert cached_files(cache) == []


def test_checkpoint_without_a_hash_in_its_name_loads(server, cache, weights):
    _, data, _ = weights
    load(server.serve("/DANet101.pth", data))
    assert cached_files(cache) == ["DANet101.pth"]


@pytest.mark.parametrize("where", ["no server", "not found"])
def test_unreachable_url_is_one_line_naming_it_and_what_to_do(server, cache, where):
    url = f"http://127.0.0.1:{free_port()}/x-0123abcd.pth" if where == "no server" else server.serve("/a.pth", b"")
    if where == "not found":
        url = url.replace("/a.pth", "/missing-0123abcd.pth")
    with pytest.raises(CheckpointError) as error:
        load(url)
    message = str(error.value)
    reason = "Connection refused" if where == "no server" else "HTTP Error 404"
    assert f"MODEL.WEIGHTS {url}: cannot download it (" in message and reason in message
    assert "give MODEL.WEIGHTS the file" in message and str(cache) in message
    assert "\n" not in message and len(message) < 400
    assert cached_files(cache) == []


def test_detectron2_url_downloads_from_detectron2s_site_the_same_way(server, cache, weights, monkeypatch):
    """detectron2:// names a file under detectron2's download site: fetched, checked and
    cached as a URL, and offline the same one line (configs/original's MODEL.WEIGHTS)."""
    from detectron2.utils.file_io import Detectron2Handler

    _, data, _ = weights
    site = server.serve("/detectron2/DeepLab/tiny.pth", data).replace("DeepLab/tiny.pth", "")
    monkeypatch.setattr(Detectron2Handler, "S3_DETECTRON2_PREFIX", site)
    load("detectron2://DeepLab/tiny.pth")
    assert cached_files(cache) == ["tiny.pth"]
    with pytest.raises(CheckpointError) as error:
        load("detectron2://DeepLab/R-103.pkl")
    message = str(error.value)
    assert message.startswith(f"MODEL.WEIGHTS {site}DeepLab/R-103.pkl: cannot download it (HTTP Error 404")
    assert "\n" not in message
