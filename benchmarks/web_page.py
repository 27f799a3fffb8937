"""Drive the web demo (tools/web_demo.py) in a real browser: the server in a
subprocess, its page in headless Chromium through Selenium. Shared by the
browser tests (tests/test_web_demo.py), the latency benchmark and the docs
screenshot (benchmarks/bench_web_demo.py).

The browser is Debian's ``chromium`` with its ``chromium-driver`` (browser
downloads are not possible where the tests run); Selenium is told both paths,
so it never looks for a driver to download.
"""

import base64
import io
import math
import os
import re
import subprocess
import sys
import tempfile
import threading

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.ui import Select, WebDriverWait

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB_DEMO = os.path.join(REPO, "tools", "web_demo.py")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags that let Chromium run headless as root in a container, offline and quiet.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def browser_missing():
    """Why the browser cannot run here (a sentence), or None when it can."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
    return None


class WebDemoServer:
    """``python tools/web_demo.py --port 0 <argv>`` in a subprocess, as a
    context manager; ``url`` is where it serves. Its console output is kept in
    ``output`` (a list of lines), read as it comes so the server never blocks on it."""

    def __init__(self, argv, env=None, cwd=None, timeout=180):
        self.process = subprocess.Popen(
            [sys.executable, WEB_DEMO, "--port", "0", *map(str, argv)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
        )  # fmt: skip
        self.output = []
        started = threading.Event()
        self.url = None

        def read():
            for line in self.process.stdout:
                self.output.append(line.rstrip("\n"))
                match = re.search(r" on (http://\S+/) ", line)
                if match and self.url is None:
                    self.url = match.group(1)
                    started.set()
            started.set()  # the server ended

        threading.Thread(target=read, daemon=True).start()
        started.wait(timeout)
        if self.url is None:
            self.stop()
            raise RuntimeError("tools/web_demo.py did not start:\n" + "\n".join(self.output[-20:]))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def decode_data_url(url):
    """The pixels of a data:image/png;base64 URL: [H, W] or [H, W, 3] uint8."""
    header, _, data = url.partition(",")
    if not header.startswith("data:image/png;base64"):
        raise ValueError(f"not a PNG data URL: {url[:40]!r}")
    return np.array(Image.open(io.BytesIO(base64.b64decode(data))))


def _inside_pixel(start, pixel_size, index):
    """An integer page coordinate (what a mouse click has) inside pixel ``index``
    of an image shown from ``start`` with pixels ``pixel_size`` wide."""
    low, high = start + index * pixel_size, start + (index + 1) * pixel_size
    centre = (low + high) / 2
    inside = [c for c in (math.floor(centre), math.ceil(centre)) if low <= c < high]
    if not inside:
        raise ValueError(f"pixel {index} is shown {pixel_size:.2f} page pixels wide: no click lands inside it")
    return inside[0]


class DemoPage:
    """The web demo's page open in headless Chromium, with the actions of a
    user; each waits for the page's answer (a picture or a message)."""

    def __init__(self, url, window_size=(1280, 1000), timeout=120):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        self._profile = tempfile.TemporaryDirectory(prefix="web-demo-chromium-")
        options.add_argument(f"--user-data-dir={self._profile.name}")
        options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.timeout = timeout
        self.driver.get(url)
        self._wait(lambda: self.driver.find_elements("id", "weights") or self.message())

    def close(self):
        self.driver.quit()
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _wait(self, condition):
        return WebDriverWait(self.driver, self.timeout, poll_frequency=0.02).until(lambda driver: condition())

    def _script(self, script, *args):
        return self.driver.execute_script(script, *args)

    def _answered(self, action):
        """Do ``action`` and wait until the page has handled one more answer."""
        before = int(self._script("return document.body.dataset.requests"))
        action()
        self._wait(lambda: int(self._script("return document.body.dataset.requests")) > before)

    def upload(self, path):
        """Choose the file ``path`` in the page's file input."""
        field = self.driver.find_element("id", "file-input")
        self._answered(lambda: field.send_keys(os.path.abspath(path)))

    def drop(self, path):
        """Drop the file ``path`` on the page's drop zone (a drop event carrying
        the file, as a drag from the desktop ends: WebDriver cannot drag files)."""
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        script = (
            "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
            "const transfer = new DataTransfer(); transfer.items.add(new File([bytes], arguments[1]));"
            "document.getElementById('drop-zone').dispatchEvent("
            "new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));"
        )
        self._answered(lambda: self._script(script, data, os.path.basename(path)))

    def pick_sample(self, index):
        sample = self.driver.find_elements("css selector", "#samples img")[index]
        self._answered(sample.click)

    def select_weights(self, name):
        self._answered(lambda: Select(self.driver.find_element("id", "weights")).select_by_value(name))

    def click_pixel(self, x, y, target="image"):
        """A real mouse click on image pixel (x, y) of the image or prediction
        shown, at the pixel's centre in the page's coordinates."""
        box = self._script(
            "arguments[0].scrollIntoView({block: 'center'}); const r = arguments[0].getBoundingClientRect();"
            "return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];",
            self.driver.find_element("id", target),
        )
        left, top, width, height, natural_width, natural_height = box
        actions = ActionChains(self.driver)
        actions.w3c_actions.pointer_action.move_to_location(
            _inside_pixel(left, width / natural_width, x), _inside_pixel(top, height / natural_height, y)
        )
        actions.w3c_actions.pointer_action.click()
        self._answered(actions.perform)

    def message(self):
        """The message shown, or "" when there is none."""
        return self._script("const m = document.getElementById('message'); return m.hidden ? '' : m.textContent;")

    def picture(self, element_id):
        """The pixels of the PNG an <img> (or the download link) of the page shows."""
        element = self.driver.find_element("id", element_id)
        return decode_data_url(element.get_attribute("href" if element.tag_name == "a" else "src"))

    def attention_point(self):
        """The image point (x, y) whose attention is shown."""
        return tuple(
            int(v) for v in self._script("return document.getElementById('attention').dataset.point").split(",")
        )

    def channel_maps(self):
        """{channel index: pixels of its map} of the channels shown."""
        figures = self.driver.find_elements("css selector", "#channels figure")
        return {
            int(figure.get_attribute("data-channel")): decode_data_url(
                figure.find_element("tag name", "img").get_attribute("src")
            )
            for figure in figures
        }

    def legend(self):
        """[(class id, name, share as shown)] of the legend, in its order."""
        rows = self.driver.find_elements("css selector", "#legend tbody tr")
        return [
            (
                int(row.get_attribute("data-class-id")),
                row.find_element("class name", "name").text,
                row.find_element("class name", "share").text,
            )
            for row in rows
        ]

    def seconds(self, kind):
        """The page's last time from upload ("segment") or click ("attention") to picture."""
        return float(self._script(f"return document.body.dataset.{kind}Seconds"))

    def screenshot(self, path):
        """A PNG of the whole page, also what is scrolled out of the window."""
        width, height = self._script("const e = document.documentElement; return [e.scrollWidth, e.scrollHeight];")
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
