#!/usr/bin/env python
"""Time the web demo from upload to picture, in a real browser.

    python benchmarks/bench_web_demo.py --config-file configs/demo.yaml \\
        --image datasets/toy_cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png \\
        --screenshot docs/web_demo.png --point 230,125 MODEL.WEIGHTS output/demo/model_final.pth

starts tools/web_demo.py with the config and overrides (with DETECTRON2_DATASETS
as set), opens its page in headless Chromium (benchmarks/web_page.py), uploads
the image once to warm up and then --rounds times, and prints the median and
range of the page's own time from upload to the prediction shown: the request,
the inference, the pictures' PNG encoding, the transfer and their display. Then
the same for a click on --point to its attention map and channels. With
--screenshot FILE it saves the page showing that point's attention, as a small
PNG for the docs. Measure on an idle machine: other work on the cores shows up
in the times.
"""

import argparse
import os
import platform
import statistics
import sys

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.web_page import DemoPage, WebDemoServer, browser_missing  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--image", required=True, help="the image to upload")
    parser.add_argument("--rounds", type=int, default=10, help="timed uploads and clicks (default 10)")
    parser.add_argument("--point", default=None, help='the image pixel "x,y" to click (default the centre)')
    parser.add_argument("--screenshot", metavar="FILE", help="save the page with the point's attention here")
    parser.add_argument("--window-width", type=int, default=1100, help="browser window width in the screenshot")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs")
    return parser


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def summary(seconds):
    return (
        f"median {statistics.median(seconds):.3f} s (min {min(seconds):.3f}, max {max(seconds):.3f}, n={len(seconds)})"
    )


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        parser.error(reason)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    width, height = Image.open(args.image).size
    x, y = (width // 2, height // 2) if args.point is None else map(int, args.point.split(","))
    server_argv = ["--config-file", args.config_file, *args.overrides]
    with WebDemoServer(server_argv) as server, DemoPage(server.url, (args.window_width, 1000)) as page:
        page.upload(args.image)  # warm-up: the first forward allocates
        if page.message():
            sys.exit(f"bench_web_demo.py: error: the page says: {page.message()}")
        page.click_pixel(x, y)
        upload, click = [], []
        for _ in range(args.rounds):
            page.upload(args.image)
            upload.append(page.seconds("segment"))
            page.click_pixel(x, y)
            click.append(page.seconds("attention"))
        threads = torch.get_num_threads()
        print(f"{cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {threads} threads by default")
        print(f"{args.config_file} {' '.join(args.overrides)} on {args.image} ({width}x{height})")
        print(f"upload to prediction shown: {summary(upload)}")
        print(f"click on ({x}, {y}) to its attention shown: {summary(click)}")
        if args.screenshot:
            page.screenshot(args.screenshot)
            Image.open(args.screenshot).convert("RGB").save(args.screenshot, optimize=True)  # lossless, smaller
            print(f"Saved the page to {args.screenshot} ({os.path.getsize(args.screenshot) // 1024} kB)")


if __name__ == "__main__":
    main()
