"""`make setup` installs the package (pyproject.toml) editable: `import danet`
works from any directory, and finds this checkout."""
import os
import subprocess
import sys

from helpers import REPO


def test_danet_imports_from_another_directory(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", "import danet; print(danet.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.path.dirname(done.stdout.strip()) == os.path.join(REPO, "danet")
