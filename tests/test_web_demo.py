"""tools/web_demo.py: its page in headless Chromium segments as demo.py does and
shows the attention tools/visualize_attention.py draws, bad input ends in a
message in the page while the server keeps serving, and the server writes
nothing outside its output folder.

The browser tests need Debian's chromium and chromium-driver; without them they
skip, unless DANET_REQUIRE_BROWSER=1 (CI) makes them fail.
"""

import http.client
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model

from helpers import BASE_CONFIG, TINY_MODEL_OPTS, load_script, one_line_error, save_tiny_weights, tiny_cfg

from benchmarks.web_page import DemoPage, WebDemoServer, browser_missing
from danet import cli
from danet.errors import InputError
from danet.visualization import (
    AttentionRecorder,
    ImageTooLargeError,
    InteractiveSegmenter,
    decode_image,
    explain_point,
    strongest_channels_at,
)

demo = load_script("demo.py")
visualize_attention = load_script("tools/visualize_attention.py")
web_demo = load_script("tools/web_demo.py")

TOY_VAL = "toy_cityscapes_fine_sem_seg_val"  # as the server registers it from DETECTRON2_DATASETS
MEMORY_LIMIT_MB = 4  # 19 classes: images up to about 19,000 pixels


def random_image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory, toy_cityscapes):
    """The web demo of tiny random weights, started in its own working folder
    (also its HOME) with its output folder inside; the weights' folder holds
    a checkpoint of another number of classes."""
    root = tmp_path_factory.mktemp("web_demo")
    weights = root / "weights"
    weights.mkdir()
    good = save_tiny_weights(weights / "tiny_model.pth")
    save_tiny_weights(weights / "five_classes.pth", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5")
    work = root / "work"
    (work / "home").mkdir(parents=True)
    env = dict(
        os.environ,
        HOME=str(work / "home"),
        DETECTRON2_DATASETS=toy_cityscapes["datasets"],
        OMP_NUM_THREADS=str(torch.get_num_threads()),  # the same float sums as demo.py in this process
    )
    argv = [
        "--config-file", BASE_CONFIG, "--output", "out", "--memory-limit-mb", MEMORY_LIMIT_MB, "--max-upload-mb", 1,
        "--samples", 2, *TINY_MODEL_OPTS, "MODEL.WEIGHTS", good, "DATASETS.TEST", f"('{TOY_VAL}',)",
    ]  # fmt: skip
    before = files_under(root)
    with WebDemoServer(argv, env=env, cwd=work) as server:
        yield {"server": server, "weights": good}
    written = set(files_under(root)) - set(before)
    assert written and all(path.startswith(os.path.join("work", "out") + os.sep) for path in written), written


@pytest.fixture(scope="module")
def page(served):
    reason = browser_missing()
    if reason:
        if os.environ.get("DANET_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DANET_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with DemoPage(served["server"].url) as page:
        yield page


def run_demo(tmp_path, image_path, weights):
    output = tmp_path / "demo"
    argv = ["--config-file", BASE_CONFIG, "--input", str(image_path), "--output", str(output),
            "--opts", *TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights]  # fmt: skip
    assert demo.main(argv) == 0
    stem = output / os.path.splitext(os.path.basename(image_path))[0]
    return np.array(Image.open(f"{stem}_pred.png")), np.array(Image.open(f"{stem}_vis.png"))


def tool_picture(tmp_path, image_path, weights, points, channels):
    output = tmp_path / "attention"
    argv = ["--config-file", BASE_CONFIG, "--input", str(image_path), "--output", str(output),
            "--points", ";".join(f"{x},{y}" for x, y in points), "--channels", ",".join(map(str, channels)),
            "--opts", *TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights]  # fmt: skip
    assert visualize_attention.main(argv) == 0
    return np.array(Image.open(output / (os.path.splitext(os.path.basename(image_path))[0] + "_attention.png")))


def columns_where(band, panel):
    """The columns of a band of a picture where ``panel`` (as high as the band) appears pixel for pixel."""
    width = panel.shape[1]
    return [c for c in range(band.shape[1] - width + 1) if np.array_equal(band[:, c : c + width], panel)]


def test_page_segments_as_demo_and_shows_the_tools_attention(served, page, tmp_path):
    height, width = 60, 100
    image = random_image(height, width, seed=1)
    path = tmp_path / "street.png"
    Image.fromarray(image).save(path)
    page.upload(path)
    assert page.message() == ""

    train_ids, vis = run_demo(tmp_path, path, served["weights"])
    np.testing.assert_array_equal(page.picture("image"), image)
    np.testing.assert_array_equal(page.picture("download"), train_ids)
    np.testing.assert_array_equal(page.picture("prediction"), vis[:height, :width])
    counts = np.bincount(train_ids.ravel(), minlength=19)
    legend = page.legend()
    assert [class_id for class_id, _, _ in legend] == sorted(np.flatnonzero(counts), key=lambda i: -counts[i])
    assert [share for _, _, share in legend] == [f"{100 * counts[i] / train_ids.size:.1f}%" for i, _, _ in legend]
    assert legend[0][1] == demo.class_names_and_colors(tiny_cfg())[0][legend[0][0]]

    shown = {}
    for (x, y), target in (((10, 20), "image"), ((83, 47), "prediction")):
        page.click_pixel(x, y, target)
        assert page.message() == "" and page.attention_point() == (x, y)
        shown[(x, y)] = page.picture("attention-map"), page.channel_maps()
    (first_map, first_channels), (second_map, second_channels) = shown.values()
    assert first_map.shape == (height, width, 3) and not np.array_equal(first_map, second_map)
    assert len(first_channels) == len(second_channels) == 4

    channels = list(dict.fromkeys([*first_channels, *second_channels]))
    picture = tool_picture(tmp_path, path, served["weights"], list(shown), channels)
    point_band, channel_band = picture[20 : 20 + height], picture[-height:]  # under the 20-pixel captions
    for position_map, channel_maps in shown.values():
        assert columns_where(point_band, position_map)
        for channel_map in channel_maps.values():
            assert columns_where(channel_band, channel_map)


def test_a_generated_sample_or_a_dropped_image_is_segmented_as_demo_does(served, page, tmp_path, toy_cityscapes):
    page.pick_sample(1)
    assert page.message() == ""
    sample = DatasetCatalog.get(toy_cityscapes["val"])[1]["file_name"]
    train_ids, _ = run_demo(tmp_path, sample, served["weights"])
    np.testing.assert_array_equal(page.picture("download"), train_ids)

    Image.fromarray(random_image(36, 44, seed=8)).save(tmp_path / "dropped.png")
    page.drop(tmp_path / "dropped.png")
    assert page.message() == ""
    train_ids, _ = run_demo(tmp_path, tmp_path / "dropped.png", served["weights"])
    np.testing.assert_array_equal(page.picture("download"), train_ids)
    assert page.driver.find_element("id", "download").get_attribute("download") == "dropped_pred.png"


def test_bad_input_gets_a_message_in_the_page_and_the_server_keeps_serving(served, page, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    page.upload(tmp_path / "notes.txt")
    assert page.message().startswith("notes.txt is not an image Pillow can read")

    Image.fromarray(random_image(200, 200, seed=2)).save(tmp_path / "large.png")
    page.upload(tmp_path / "large.png")
    message = page.message()
    assert message.startswith("large.png is 200x200 pixels") and f"memory limit of {MEMORY_LIMIT_MB} MB" in message

    Image.fromarray(random_image(700, 700, seed=3)).save(tmp_path / "heavy.png")  # 1.4 MB of noise
    page.upload(tmp_path / "heavy.png")
    assert "more than the server accepts (1 MB, --max-upload-mb)" in page.message()

    page.select_weights("five_classes.pth")
    message = page.message()
    assert message.startswith("five_classes.pth does not fit") and "still using tiny_model.pth" in message
    assert "NUM_CLASSES" in message
    assert page.driver.find_element("id", "weights").get_attribute("value") == "tiny_model.pth"

    Image.fromarray(random_image(30, 40, seed=4)).save(tmp_path / "good.png")
    page.upload(tmp_path / "good.png")
    assert page.message() == "" and page.picture("download").shape == (30, 40)


def api(served, path, data=None):
    """(status, JSON answer) of a request to the server, without the page."""
    request = urllib.request.Request(served["server"].url + path.lstrip("/"), data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_the_api_answers_bad_requests_with_one_line_messages(served, tmp_path):
    assert served["server"].url.startswith("http://127.0.0.1:")  # --host defaults to this machine only
    status, info = api(served, "/api/info")
    assert status == 200 and info["weight_choices"] == ["five_classes.pth", "tiny_model.pth"]
    assert info["weights"] == "tiny_model.pth" and len(info["samples"]) == 2

    Image.fromarray(random_image(30, 40, seed=5)).save(tmp_path / "small.png")
    status, result = api(served, "/api/segment?name=../../small.png", (tmp_path / "small.png").read_bytes())
    assert status == 200 and result["name"] == "small.png" and result["download_name"] == "small_pred.png"
    cases = [
        (f"/api/attention?id={result['id']}&x=40&y=3", None, 400, "point (40, 3) is outside the image (40x30"),
        (f"/api/attention?id={result['id']}&x=a&y=3", None, 400, "x must be a whole number, got 'a'"),
        ("/api/attention?id=999&x=1&y=1", None, 404, "The server no longer keeps result 999"),
        ("/api/segment?name=x.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, 400, "x.png cannot be read as an image"),
        ("/api/segment?name=big.bin", b"0" * (2**20 + 1), 413, "The file is 1.0 MB, more than the server accepts"),
        ("/api/weights", json.dumps({"name": "../tiny_model.pth"}).encode(), 400, "'../tiny_model.pth' is not a"),
        ("/api/samples/7", None, 400, "There is no sample 7"),
        ("/api/samples/first", None, 400, "sample must be a whole number"),
        ("/api/nothing", None, 404, "No page /api/nothing here"),
    ]
    for path, data, expected_status, expected in cases:
        status, answer = api(served, path, data)
        assert status == expected_status and answer["error"].startswith(expected), (path, answer)
        assert "\n" not in answer["error"]
    status, point = api(served, f"/api/attention?id={result['id']}&x=39&y=29")
    assert status == 200 and point["point"] == [39, 29] and point["cell"] == [5, 7]
    # A negative length is refused, not read until the client hangs up.
    host, port = served["server"].url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/segment?name=a.png")
    connection.putheader("Content-Length", "-1")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400 and json.load(response)["error"] == "Content-Length must not be negative, got -1"
    connection.close()


def test_channels_strongest_at_a_cell_stand_out_from_their_own_mean():
    response = torch.zeros(4, 3, 5)
    response[0] = 100.0  # large but flat: says nothing of any cell
    response[1, 1, 2] = 1.0  # stands out most at (1, 2)
    response[2] = torch.arange(15.0).reshape(3, 5)  # largest at the last cell, average at (1, 2)
    response[3, 1, 2], response[3, 0, 0] = 0.5, -1.0  # above its mean, less far than channel 1
    channels, scores = strongest_channels_at(response, (1, 2), 4)
    assert channels == [1, 3, 0, 2]  # the flat and the average channel tie at 0, in index order
    # Channel 1: mean 1/15, standard deviation 1/sqrt(15) (of 15 cells, unbiased), so (1 - 1/15) * sqrt(15).
    assert scores[0] == pytest.approx(14 / 15**0.5) and scores[2:] == [0.0, 0.0]
    # Channel 2 at its largest cell: 14 against a mean of 7 and a deviation of sqrt(20).
    assert strongest_channels_at(response, (2, 4), 1) == ([2], [pytest.approx(7 / 20**0.5)])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_uploads_are_decoded_as_read_image_reads_files(tmp_path, mode):
    picture = Image.fromarray(random_image(20, 30, seed=6)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotated, shown turned by 90 degrees
    path = tmp_path / f"photo.{'png' if mode in ('RGBA', 'P') else 'jpg'}"
    picture.save(path, exif=exif)
    decoded = decode_image(path.read_bytes(), path.name, memory_limit_mb=1, num_classes=19)
    assert decoded.shape == (30, 20, 3)
    np.testing.assert_array_equal(decoded, read_image(str(path), format="RGB"))


def test_image_size_is_checked_on_the_header_before_decoding(tmp_path):
    Image.new("L", (3000, 2000)).save(tmp_path / "flat.png")  # 6 megapixels in a few kB
    with pytest.raises(ImageTooLargeError, match=r"flat.png is 3000x2000 pixels: segmenting it takes about 1236 MB"):
        decode_image((tmp_path / "flat.png").read_bytes(), "flat.png", memory_limit_mb=100, num_classes=19)
    truncated = (tmp_path / "flat.png").read_bytes()[:200]
    with pytest.raises(InputError, match="cut.png cannot be decoded"):
        decode_image(truncated, "cut.png", memory_limit_mb=10_000, num_classes=19)


def test_with_a_sliding_window_the_prediction_uses_it_and_the_attention_is_the_tools():
    cfg = tiny_cfg(
        "TEST.SLIDING_WINDOW.ENABLED", "True", "TEST.SLIDING_WINDOW.CROP_SIZE", "(32, 48)",
        "TEST.SLIDING_WINDOW.STRIDE", "(24, 32)",
    )  # fmt: skip
    model = build_model(cfg).eval()
    image = random_image(60, 100, seed=7)
    segmenter = InteractiveSegmenter(cfg, model)
    logits, attention = segmenter.segment(image)
    assert attention is None  # windows: no forward attended over the whole image
    whole_image, tools = visualize_attention.segment_with_attention(model, AttentionRecorder(model), image, cfg)
    assert logits.shape == whole_image.shape and not torch.allclose(logits, whole_image)
    attention = segmenter.attention(image)
    assert attention.input_size == tools.input_size == (48, 80)
    torch.testing.assert_close(attention.position_input, tools.position_input, rtol=0, atol=0)
    point = explain_point(attention, image, (50, 30))
    assert point.cell == (3, 5) and point.position_map.shape == (60, 100, 3)


def test_overrides_come_at_the_end_or_after_opts(capsys):
    parser = web_demo.get_parser()
    args = cli.parse_args(parser, ["--config-file", "c.yaml", "--port", "9", "A.B", "1", "--opts", "C", "2"])
    assert args.opts == ["A.B", "1", "C", "2"] and args.port == 9
    args = cli.parse_args(parser, ["--config-file", "c.yaml", "--opts", "C", "2"])
    assert args.opts == ["C", "2"] and args.host == "127.0.0.1"
    with pytest.raises(SystemExit) as exit_info:
        web_demo.main(["--config-file", BASE_CONFIG, "--channels", "0"])
    assert exit_info.value.code == 2 and "--channels must be positive, got 0" in capsys.readouterr().err


def test_weights_that_do_not_fit_at_start_end_in_one_line(tmp_path):
    weights = save_tiny_weights(tmp_path / "five_classes.pth", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5")
    argv = ["--config-file", BASE_CONFIG, "--output", str(tmp_path / "out"), *TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights]
    message = one_line_error(lambda: web_demo.main(argv))
    assert message.startswith("web_demo.py: error: MODEL.WEIGHTS does not fit this model")
