#!/usr/bin/env python
"""See DANet segment and attend in the browser.

    python tools/web_demo.py --config-file configs/r50.yaml [--port 8080] [--host 127.0.0.1] \\
        MODEL.WEIGHTS output/r50/model_final.pth

serves a page (http://127.0.0.1:8080/) to upload or drop an image, or pick one
of the first images of DATASETS.TEST[0]; it shows the prediction blended with
the class colours, each class's share of the pixels, and for a clicked pixel
its position-attention map and the channels that respond most there after
channel attention; the prediction (train ids) downloads as a PNG. The
prediction is demo.py's (TEST.AUG, TEST.SLIDING_WINDOW apply); the attention
is tools/visualize_attention.py's. Bad input (a file that is not an image, an
image too large for --memory-limit-mb, a checkpoint of the weights' folder that
does not fit the config) gets a message in the page. The server keeps
everything in memory and writes only its log, into --output. Config overrides
are KEY VALUE pairs at the end, or after --opts.
"""

import argparse
import base64
import collections
import itertools
import json
import logging
import mimetypes
import os
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet import cli  # noqa: E402
from danet.data.datasets import class_names_and_colors  # noqa: E402
from danet.engine import build_inference_model  # noqa: E402
from danet.errors import InputError, exit_on_input_error  # noqa: E402
from danet.visualization import (  # noqa: E402
    ImageTooLargeError,
    InteractiveSegmenter,
    blend,
    class_shares,
    decode_image,
    explain_point,
)

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_demo.html")
WEIGHTS_EXTENSIONS = (".pth", ".pkl", ".pt")
# Results whose attention a click can still ask for; older ones are forgotten
# (a full-size Cityscapes frame holds two feature maps of 64 MB each).
KEPT_RESULTS = 4
logger = logging.getLogger("web_demo")


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    cli.add_config_arguments(parser)
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one (default 8080)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)"
    )
    parser.add_argument("--output", help="folder for the server's log.txt (default OUTPUT_DIR/web_demo)")
    parser.add_argument(
        "--memory-limit-mb", type=float, default=4096,
        help="refuse images whose segmentation would take more memory than this beyond the model (default 4096)",
    )  # fmt: skip
    parser.add_argument("--max-upload-mb", type=float, default=64, help="largest file accepted (default 64)")
    parser.add_argument(
        "--samples", type=int, default=8, help="how many images of DATASETS.TEST[0] to offer (default 8)"
    )
    parser.add_argument("--panel-width", type=int, default=480, help="attention maps wider than this are scaled down")
    parser.add_argument("--channels", type=int, default=4, help="how many channels to show for a pixel (default 4)")
    return parser


class ResultExpiredError(InputError):
    """A click on a result the server no longer keeps."""


class WebDemo:
    """The model and the results behind the page; thread-safe (one request at
    a time uses the model)."""

    def __init__(self, cfg, args):
        self.cfg = cfg
        self.args = args
        self.names, self.colors = class_names_and_colors(cfg)
        self.weights = cfg.MODEL.WEIGHTS
        # The folder whose checkpoints the page offers (None for a URL); switching picks within it.
        self.weights_folder = os.path.dirname(os.path.abspath(self.weights)) if os.path.isfile(self.weights) else None
        self.max_upload_bytes = int(args.max_upload_mb * 2**20)
        self.segmenter = InteractiveSegmenter(cfg, build_inference_model(cfg))
        self.samples = self._sample_files(args.samples)
        self.results = collections.OrderedDict()
        self.result_ids = itertools.count(1)
        self.lock = threading.Lock()

    def _sample_files(self, count):
        if count <= 0 or not self.cfg.DATASETS.TEST:
            return []
        dataset = self.cfg.DATASETS.TEST[0]
        try:
            records = DatasetCatalog.get(dataset)
        except Exception as e:  # samples are optional: a dataset not on this machine, or not readable
            logger.warning(f"No samples of {dataset}: {e}")
            return []
        return [record["file_name"] for record in records[:count]]

    def weight_choices(self):
        """The checkpoints of the weights' folder, listed afresh (training may add some)."""
        if self.weights_folder is None:
            return [self.weights]
        return sorted(name for name in os.listdir(self.weights_folder) if name.endswith(WEIGHTS_EXTENSIONS))

    def info(self):
        cfg = self.cfg
        window = cfg.TEST.SLIDING_WINDOW
        return {
            "config": self.args.config_file,
            "weights": os.path.basename(self.weights) if self.weights_folder else self.weights,
            "weight_choices": self.weight_choices(),
            "samples": [os.path.basename(path) for path in self.samples],
            "test_size": [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST],
            "sliding_window": list(window.CROP_SIZE) if window.ENABLED else None,
            "test_time_augmentation": cfg.TEST.AUG.ENABLED,
            "max_upload_bytes": self.max_upload_bytes,
        }

    def sample(self, index):
        """The bytes and the content type of sample ``index``."""
        if not 0 <= index < len(self.samples):
            offered = f"samples 0..{len(self.samples) - 1}" if self.samples else "no samples"
            raise InputError(f"There is no sample {index}: the server offers {offered}")
        path = self.samples[index]
        with open(path, "rb") as f:
            return f.read(), mimetypes.guess_type(path)[0] or "application/octet-stream"

    def segment(self, data, name):
        """The page's view of the prediction of an image file's bytes."""
        image = decode_image(data, name, self.args.memory_limit_mb, len(self.names))
        with self.lock:
            logits, attention = self.segmenter.segment(image)
            train_ids = cli.predict_train_ids(logits)
            result_id = str(next(self.result_ids))
            self.results[result_id] = {"image": image, "attention": attention}
            while len(self.results) > KEPT_RESULTS:
                self.results.popitem(last=False)
        shares = class_shares(train_ids, len(self.names))
        present = sorted((i for i in range(len(self.names)) if shares[i] > 0), key=lambda i: -shares[i])
        return {
            "id": result_id,
            "name": name,
            "width": image.shape[1],
            "height": image.shape[0],
            "image": png_data_url(image),
            "prediction": png_data_url(blend(image, train_ids, self.colors)),
            "train_ids": png_data_url(train_ids),
            "download_name": os.path.splitext(name)[0] + "_pred.png",
            "classes": [
                {"id": i, "name": self.names[i], "color": "#%02x%02x%02x" % tuple(self.colors[i]), "share": shares[i]}
                for i in present
            ],
        }

    def attention(self, result_id, x, y):
        """The page's view of what image point (x, y) of a result attended to."""
        with self.lock:
            result = self.results.get(result_id)
            if result is None:
                raise ResultExpiredError(
                    f"The server no longer keeps result {result_id} (it keeps the last {KEPT_RESULTS}): "
                    "segment the image again"
                )
            if result["attention"] is None:
                result["attention"] = self.segmenter.attention(result["image"])
            point = explain_point(
                result["attention"], result["image"], (x, y), self.args.panel_width, self.args.channels
            )
        return {
            "point": list(point.point),
            "cell": list(point.cell),
            "feature_size": list(result["attention"].feature_size),
            "map": png_data_url(point.position_map),
            "channels": [
                {"index": channel, "score": score, "map": png_data_url(picture)}
                for channel, score, picture in zip(point.channels, point.scores, point.channel_maps)
            ],
        }

    def use_weights(self, name):
        """Switch to checkpoint ``name`` of the weights' folder; weights that do
        not fit the config raise an InputError and the current ones stay."""
        choices = self.weight_choices()
        if self.weights_folder is None or name not in choices:
            raise InputError(f"{name!r} is not a checkpoint of the weights' folder: pick one of {choices}")
        path = os.path.join(self.weights_folder, name)
        try:
            model = build_inference_model(self.cfg, weights=path)
        except InputError as e:
            raise InputError(
                f"{name} does not fit {self.args.config_file}, still using {os.path.basename(self.weights)}: {e}"
            ) from e
        with self.lock:
            self.segmenter = InteractiveSegmenter(self.cfg, model)
            self.weights = path
            self.results.clear()
        logger.info(f"Now using the weights {path}")
        return self.info()


def png_data_url(array):
    """A data: URL of a [H, W] grey or [H, W, 3] RGB uint8 array as PNG."""
    picture = array[:, :, ::-1] if array.ndim == 3 else array
    ok, encoded = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok, "OpenCV failed to encode a uint8 array as PNG"
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def make_handler(demo):
    """The request handler of the page and its API (JSON; errors as {"error": message})."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "danet-web-demo"

        def do_GET(self):
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            if url.path in ("/", "/index.html"):
                with open(PAGE, "rb") as f:
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", f.read())
            elif url.path == "/api/info":
                self._answer(demo.info)
            elif url.path.startswith("/api/samples/"):
                self._answer_sample(url.path.rpartition("/")[2])
            elif url.path == "/api/attention":
                self._answer(
                    lambda: demo.attention(
                        query.get("id"), _integer(query.get("x"), "x"), _integer(query.get("y"), "y")
                    )
                )
            else:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"No page {url.path} here: open /"})

        def do_POST(self):
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            if url.path == "/api/segment":
                name = os.path.basename(query.get("name") or "upload")
                self._answer(lambda: demo.segment(self._body(), name))
            elif url.path == "/api/weights":
                self._answer(lambda: demo.use_weights(json.loads(self._body() or b"{}").get("name")))
            else:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"No API {url.path} here"})

        def _body(self):
            length = _integer(self.headers.get("Content-Length") or 0, "Content-Length")
            if length < 0:
                raise InputError(f"Content-Length must not be negative, got {length}")
            limit = demo.max_upload_bytes
            if length > limit:
                # Read and drop the body in pieces: a client sending it gets the
                # answer rather than a connection reset.
                for start in range(0, length, 2**20):
                    self.rfile.read(min(2**20, length - start))
                raise ImageTooLargeError(
                    f"The file is {length / 2**20:.1f} MB, more than the server accepts "
                    f"({limit / 2**20:g} MB, --max-upload-mb)"
                )
            return self.rfile.read(length)

        def _answer(self, compute):
            try:
                self._send_json(HTTPStatus.OK, compute())
            except Exception as e:  # noqa: BLE001  (every failure becomes a message in the page)
                self._send_error(e)

        def _answer_sample(self, index):
            try:
                data, content_type = demo.sample(_integer(index, "sample"))
                self._send(HTTPStatus.OK, content_type, data)
            except Exception as e:  # noqa: BLE001
                self._send_error(e)

        def _send_error(self, error):
            if isinstance(error, ImageTooLargeError):
                status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            elif isinstance(error, ResultExpiredError):
                status = HTTPStatus.NOT_FOUND
            elif isinstance(error, InputError):
                status = HTTPStatus.BAD_REQUEST
            else:
                logger.error(f"{self.command} {self.path} failed:\n{traceback.format_exc()}")
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                error = f"The server failed ({type(error).__name__}: {error}); its log has the details"
            message = " ".join(str(error).split())
            logger.info(f"{self.command} {urlsplit(self.path).path}: {message}")
            self._send_json(status, {"error": message})

        def _send_json(self, status, payload):
            self._send(status, "application/json", json.dumps(payload).encode())

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            logger.debug(format % args)

    return Handler


def _integer(text, what):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number, got {text!r}") from None


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    for option in ("memory_limit_mb", "max_upload_mb", "panel_width", "channels"):
        if getattr(args, option) <= 0:
            parser.error(f"--{option.replace('_', '-')} must be positive, got {getattr(args, option)}")
    with exit_on_input_error("web_demo.py"):
        cfg = cli.config_from_args(args)
        cfg.freeze()
        output = cli.output_folder(args.output or os.path.join(cfg.OUTPUT_DIR, "web_demo"))
        setup_logger(output, name="web_demo", abbrev_name="web_demo")
        demo = WebDemo(cfg, args)
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(demo))
    except OSError as e:
        sys.exit(f"web_demo.py: error: cannot listen on {args.host}:{args.port} ({e.strerror}): pick another --port")
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"Serving {args.config_file} with {demo.weights} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
