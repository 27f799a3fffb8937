"""`make setup` installs the package (pyproject.toml) editable: `import danet`
works from any directory and finds this checkout; the dependencies pyproject.toml
declares bring everything `import danet` loads."""
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata

from helpers import REPO


def test_danet_imports_from_another_directory(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", "import danet; print(danet.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.path.dirname(done.stdout.strip()) == os.path.join(REPO, "danet")


def _distribution_name(requirement):
    return re.split(r"[<>=!~;\[ (]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_declared_dependencies_cover_what_import_danet_loads():
    """`pip install .` into an environment with torch and detectron2 (which is
    cross-installed without its dependencies) must bring every distribution
    whose modules `import danet` loads."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["dependencies"]
    reachable, todo = set(), [_distribution_name(d) for d in declared] + ["torch", "torchvision"]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_distribution_name(r) for r in requirements if "extra ==" not in r]
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, danet; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    providers = metadata.packages_distributions()
    missing = {}
    for top in {module.split(".")[0] for module in loaded} - set(sys.stdlib_module_names):
        distributions = {_distribution_name(d) for d in providers.get(top, [])}
        if distributions and not distributions & (reachable | {"danet-d2", "sal-detectron2"}):
            missing[top] = sorted(distributions)
    # omegaconf imports `attr` only when it is installed.
    missing.pop("attr", None)
    assert not missing, f"add to pyproject.toml's dependencies: {missing}"
