"""Checkpoints given by URL: downloaded once into detectron2's cache, checked,
and reported in one line when that fails.

The cache is the one detectron2 uses (iopath's: ``$FVCORE_CACHE``, default
``~/.torch/iopath_cache``), laid out as iopath lays it out (the URL's path
under the cache folder), so a file detectron2 already downloaded is reused and
a machine without network can be given the file by copying it there.

A download is written to a temporary file next to its place in the cache and
moved there only once it is whole: its length is the server's
``Content-Length``, and when its file name carries a SHA-256 prefix, as
mmsegmentation's and torchvision's do (``..._20200607_133029-2bfa2293.pth``,
``resnet50-0676ba61.pth``; torch hub's convention), its hash starts with it.
A truncated or altered download is named and never cached.
"""
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from urllib.parse import urlparse

import tqdm
from iopath.common.file_io import file_lock, get_cache_dir

from detectron2.utils.file_io import Detectron2Handler

from ..file_io import write_atomically
from .errors import CheckpointError

logger = logging.getLogger(__name__)

URL_PREFIXES = ("http://", "https://")
# "-<hex>." before the extension at the end of the file name.
_HASH_PREFIX = re.compile(r"-([0-9a-f]{6,64})\.[^.-]+$")
_CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


def is_url(path):
    """Whether ``path`` is an http(s) URL, or a ``detectron2://`` name of one."""
    return path.startswith(URL_PREFIXES + (Detectron2Handler.PREFIX,))


def local_checkpoint(path, source="MODEL.WEIGHTS"):
    """The local file of ``path``: a URL (``detectron2://`` names one under
    detectron2's download site) is downloaded and checked by
    :func:`fetch_checkpoint`; anything else is returned as it is."""
    if path.startswith(Detectron2Handler.PREFIX):
        path = Detectron2Handler.S3_DETECTRON2_PREFIX + path[len(Detectron2Handler.PREFIX) :]
    return fetch_checkpoint(path, source) if is_url(path) else path


def cached_path(url):
    """Where ``url`` is (or will be) cached."""
    parsed = urlparse(url)
    return os.path.join(get_cache_dir(), parsed.path.lstrip("/"))


def expected_hash_prefix(url):
    """The SHA-256 prefix in ``url``'s file name, or None."""
    match = _HASH_PREFIX.search(os.path.basename(urlparse(url).path))
    return match[1] if match else None


def fetch_checkpoint(url, source="MODEL.WEIGHTS"):
    """The local path of the checkpoint at ``url``, downloaded into the cache
    unless it is there already. Raises CheckpointError (one line naming
    ``source``, the URL and what to do) when it cannot be downloaded whole."""
    path = cached_path(url)
    with file_lock(path):  # one download per machine when several processes start at once
        if not os.path.isfile(path):
            _download(url, path, source)
    return path


def _download(url, path, source):
    """Download ``url`` to ``path`` through a temporary file, moved into place only
    when whole and, if the file name carries a SHA-256 prefix, matching it. A
    failure raises CheckpointError naming ``source``, the URL and the cache path."""
    advice = (
        f"download it on a machine with network and give {source} the file, "
        f"or copy it to {path} ($FVCORE_CACHE sets the cache folder)"
    )
    logger.info(f"Downloading {url} to {path} ...")

    def stream_checked(f):
        received, expected_bytes, sha256 = _stream(url, f, os.path.basename(path))
        problem = _download_problem(received, expected_bytes, sha256, expected_hash_prefix(url))
        if problem:
            raise CheckpointError(f"{source} {url}: the download is {problem}; nothing was cached: retry, or {advice}")
        logger.info(f"Downloaded {url} ({received} bytes)")

    try:
        write_atomically(path, "wb", stream_checked)
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError: no network, DNS, refused, HTTP errors, timeouts
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        raise CheckpointError(f"{source} {url}: cannot download it ({reason}); {advice}") from e


def _stream(url, f, name):
    """Write ``url`` into the file ``f``; (bytes received, Content-Length or None, SHA-256 hex digest)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        length = response.headers.get("Content-Length")
        expected_bytes = int(length) if length is not None else None
        sha256, received = hashlib.sha256(), 0
        with tqdm.tqdm(total=expected_bytes, unit="B", unit_scale=True, desc=name, disable=None) as progress:
            while chunk := response.read(_CHUNK_BYTES):
                f.write(chunk)
                sha256.update(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    return received, expected_bytes, sha256.hexdigest()


def _download_problem(received, expected_bytes, sha256, hash_prefix):
    """What is wrong with a finished download, or None."""
    if expected_bytes is not None and received != expected_bytes:
        return f"truncated ({received} of {expected_bytes} bytes)"
    if hash_prefix is not None and not sha256.startswith(hash_prefix):
        return f"altered or incomplete (its SHA-256 starts with {sha256[:len(hash_prefix)]}, its file name says {hash_prefix})"
    return None
