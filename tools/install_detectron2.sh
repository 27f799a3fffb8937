#!/usr/bin/env bash
# Install detectron2 into the virtualenv given as $1.
#
# detectron2 is not on PyPI under its own name. By default we take the Python
# code of upstream detectron2 from the `sal-detectron2` wheel (tagged for
# CPython 3.10) and cross-install it with pip's own flags; it imports on 3.11
# without its compiled `_C`, which semantic segmentation never needs.
# Set DETECTRON2_SPEC to any other pip spec (e.g. upstream's git URL) to build
# detectron2 from source instead.
set -euo pipefail
venv=${1:?usage: install_detectron2.sh VENV}
spec=${DETECTRON2_SPEC:-sal-detectron2==0.7.2}
pip="$venv/bin/python -m pip"

if [[ "$spec" == sal-detectron2* ]]; then
    purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    $pip install -q --upgrade --no-deps --only-binary=:all: \
        --python-version 3.10 --implementation cp --target "$purelib" "$spec"
    # The wheel also ships a top-level `tools` package that would shadow others.
    rm -rf "$purelib/tools"
else
    $pip install -q --no-build-isolation "$spec"
fi
"$venv/bin/python" -c 'import detectron2, detectron2.projects.deeplab; print("detectron2", detectron2.__version__, "from", detectron2.__file__)'
