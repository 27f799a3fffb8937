"""The documentation cannot rot: README.md, datasets/README.md and docs/**/*.md
are checked against the repository, and each check is shown to fail on a
made-up name (the self-tests at the end).

Checked, in code (inline spans and fenced blocks) and in links:

- a path that starts with a folder of this repository (``configs/``, ``tools/``,
  ...) exists, and a pytest node id (``tests/test_x.py::test_y``) names a test of
  that file; a bare script or config name (``demo.py``, ``r50.yaml``) is the
  name of a tracked file;
- a relative link resolves, and its ``#anchor`` is a heading of its target;
- a config key (``MODEL.DANET.MEMORY_SAVING``, and the nested keys of a
  ```` ```yaml ```` config block) is a key of detectron2's config with this
  project's defaults;
- an option given to a script of this repository (``python demo.py --input``)
  is one that script defines (itself, through ``danet/cli.py``, or through
  detectron2's ``default_argument_parser``);
- ``make <target> VAR=...`` names a target and a variable of the Makefile;
- docs/CONFIGS.md lists every config key this project adds to detectron2's,
  and a default it writes in a table is the key's default.

Conventions for writing the docs:

- another project's path is written with that project's name in front
  (``mmsegmentation/configs/danet/README.md``, ``junfu1115/DANet/danet/option.py``),
  so it is not taken for a path of this repository;
- what a command or the user makes is not checked: paths under ``output/``,
  ``datasets/cityscapes/`` and ``datasets/toy_cityscapes/``, names starting with
  ``my_``, ``classes.yaml``, and the path after an output option (``--output``,
  ``--screenshot``);
- ``<...>``, ``{a,b}``, ``*`` and ``$VAR`` in a name mark a placeholder or a
  pattern, and such names are not checked;
- HTML comments (``<!-- ... -->``) are not rendered and not checked.
"""

import ast
import functools
import glob
import os
import re
import shlex
import subprocess

import pytest
import yaml

from helpers import REPO

DOC_FILES = sorted(
    [os.path.join(REPO, "README.md"), os.path.join(REPO, "datasets", "README.md")]
    + glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True)
)
CONFIGS_DOC = os.path.join(REPO, "docs", "CONFIGS.md")
# Dotted keys under the top-level nodes of detectron2's config and this project's.
KEY = re.compile(r"\b(?:MODEL|INPUT|SOLVER|TEST|DATASETS|DATALOADER|PREEMPTION|GLOBAL)(?:\.[A-Z][A-Z0-9_]*)+\b")
REPOSITORY_FOLDERS = ("configs/", "tools/", "benchmarks/", "datasets/", "danet/", "docs/", "tests/", ".ci/")
SCRIPT = re.compile(r"^[\w.-]+\.(?:py|yaml|sh|md|toml)$")
LINK = re.compile(r"\]\(([^)\s]*)\)")
USER_FILES = re.compile(r"^(?:output/|datasets/(?:cityscapes|toy_cityscapes)/|classes\.yaml$|my_)")
PLACEHOLDER = ("<", "{", "*", "$", "...")
OUTPUT_OPTIONS = ("--output", "--screenshot", "--out")
SHELL_OPERATORS = ("&&", "||", ";", "|", ">", "2>")
MAKE_ARGUMENT = re.compile(r"^(?:-[\w-]+|\w+=.*|[\w.-]*\w)$")
FENCE = re.compile(r"```(\w*)\n(.*?)```", flags=re.S)


def without_comments(text):
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def code_spans(text):
    """Inline code and the fenced blocks that are not YAML (a config's keys are nested there)."""
    inline = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    return inline + [body for language, body in FENCE.findall(text) if language != "yaml"]


def yaml_config_keys(text):
    """The dotted keys of the YAML blocks that are configs (upper-case top-level keys)."""
    keys = []

    def walk(node, prefix):
        for name, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")
            else:
                keys.append(f"{prefix}{name}")

    for language, block in FENCE.findall(text):
        if language != "yaml":
            continue
        loaded = yaml.safe_load(block)
        if isinstance(loaded, dict) and all(str(k).isupper() or k == "_BASE_" for k in loaded):
            walk({k: v for k, v in loaded.items() if k != "_BASE_"}, "")
    return keys


def commands(span):
    """The token lists of the shell commands in a code span or block."""
    span = span.replace("\\\n", " ")
    for line in span.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        try:
            tokens = shlex.split(line)
        except ValueError:  # an inline span with an unclosed quote
            tokens = line.split()
        command = []
        for token in tokens:
            if token in SHELL_OPERATORS:
                yield command
                command = []
            else:
                command.append(token)
        yield command


@functools.lru_cache(maxsize=None)
def tracked_files():
    """The repository's files, as paths relative to it."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return frozenset(listed.stdout.split())


@functools.lru_cache(maxsize=None)
def config_defaults():
    """(detectron2's config with this project's defaults, the keys this project adds or changes)."""
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config

    from danet import add_danet_config

    deeplab = get_cfg()
    add_deeplab_config(deeplab)
    cfg = get_cfg()
    add_danet_config(cfg)
    before, after = flatten(deeplab), flatten(cfg)
    added = sorted(key for key, value in after.items() if key not in before or before[key] != value)
    return cfg, tuple(added)


def flatten(node, prefix=""):
    flat = {}
    for name, value in node.items():
        if hasattr(value, "items"):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def is_key(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def github_anchors(path):
    """The #anchors GitHub gives the headings of a Markdown file."""
    with open(path) as f:
        text = FENCE.sub("", without_comments(f.read()))
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@functools.lru_cache(maxsize=None)
def script_options(script):
    """The text in which the options of ``script`` (a path in this repository) are defined."""
    with open(os.path.join(REPO, script)) as f:
        source = f.read()
    sources = [source]
    if "danet.cli" in source or "from danet import cli" in source:
        with open(os.path.join(REPO, "danet", "cli.py")) as f:
            sources.append(f.read())
    if "default_argument_parser" in source:
        import detectron2.engine.defaults

        with open(detectron2.engine.defaults.__file__) as f:
            sources.append(f.read())
    return "\n".join(sources)


@functools.lru_cache(maxsize=None)
def makefile():
    """(targets, variables) of the Makefile."""
    with open(os.path.join(REPO, "Makefile")) as f:
        text = f.read()
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", text, flags=re.M))
    variables = set(re.findall(r"^(\w+)\s*[?:+]?=", text, flags=re.M))
    return targets, variables


def missing_files(text):
    basenames = {os.path.basename(f) for f in tracked_files()}
    missing = []
    for span in code_spans(text):
        for command in commands(span):
            previous = None
            for token in command:
                for name in re.split(r"[\s\"'=,;()\[\]]+", token):
                    name = name.rstrip(".:")
                    if not name or any(p in name for p in PLACEHOLDER) or USER_FILES.match(name):
                        continue
                    if previous in OUTPUT_OPTIONS:
                        continue
                    if name.startswith(REPOSITORY_FOLDERS):
                        path, _, test = name.partition("::")  # a pytest node id names a test of the file
                        if not os.path.exists(os.path.join(REPO, path)) or (
                            test and f"def {test.split('::')[-1]}(" not in open(os.path.join(REPO, path)).read()
                        ):
                            missing.append(name)
                    elif SCRIPT.match(name) and name not in basenames:
                        missing.append(name)
                previous = token
    return missing


def broken_links(doc, text):
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        if not os.path.exists(path):
            broken.append(target)
        elif anchor and path.endswith(".md") and anchor not in github_anchors(path):
            broken.append(target)
    return broken


def unknown_keys(text):
    cfg, _ = config_defaults()
    written = [key for span in code_spans(text) for key in KEY.findall(span)] + yaml_config_keys(text)
    return sorted({key for key in written if not is_key(cfg, key)})


def unknown_options(text):
    unknown = []
    for span in code_spans(text):
        for command in commands(span):
            scripts = [i for i, token in enumerate(command) if token.endswith(".py") and token in tracked_files()]
            if not scripts:
                continue
            script = command[scripts[0]]
            defined = script_options(script)
            for token in command[scripts[0] + 1 :]:
                if token == "--":  # config overrides follow
                    break
                if token.startswith("--") and token != "--help":  # argparse's own
                    option = token.split("=")[0]
                    if f'"{option}"' not in defined and f"'{option}'" not in defined:
                        unknown.append(f"{script} {option}")
                    if option == "--opts":
                        break
    return unknown


def unknown_make(text):
    targets, variables = makefile()
    unknown = []
    for span in code_spans(text):
        for command in commands(span):
            # A quoted message ("make gpu-check: no CUDA device ...") is not a command.
            if not command or command[0] != "make" or not all(MAKE_ARGUMENT.match(t) for t in command[1:]):
                continue
            for token in command[1:]:
                if "=" in token:
                    if token.split("=")[0] not in variables:
                        unknown.append(f"make variable {token.split('=')[0]}")
                elif not token.startswith("-") and token not in targets:
                    unknown.append(f"make target {token}")
    return unknown


def doc_problems(doc, text):
    """Every name in ``text`` (the Markdown of ``doc``) that does not exist, one string each."""
    text = without_comments(text)
    return (
        [f"missing file {name}" for name in missing_files(text)]
        + [f"broken link {target}" for target in broken_links(doc, text)]
        + [f"unknown config key {key}" for key in unknown_keys(text)]
        + [f"unknown option {option}" for option in unknown_options(text)]
        + unknown_make(text)
    )


def relative(doc):
    return os.path.relpath(doc, REPO)


def test_docs_exist():
    names = {relative(doc) for doc in DOC_FILES}
    expected = {"README.md", "datasets/README.md"} | {
        f"docs/{name}.md"
        for name in (
            "INSTALL",
            "GETTING_STARTED",
            "MODEL_ZOO",
            "CONFIGS",
            "BENCHMARKS",
            "DEPLOYMENT",
            "TROUBLESHOOTING",
        )
    }
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("doc", DOC_FILES, ids=relative)
def test_every_name_in_the_docs_exists(doc):
    with open(doc) as f:
        problems = doc_problems(doc, f.read())
    assert not problems, f"{relative(doc)}: {sorted(set(problems))}"


def test_configs_doc_lists_every_key_this_project_adds_with_its_default():
    cfg, added = config_defaults()
    with open(CONFIGS_DOC) as f:
        text = without_comments(f.read())
    written = set(re.findall(r"`([A-Z][A-Z0-9_.]*)`", text))
    assert not [key for key in added if key not in written], "docs/CONFIGS.md lacks keys this project adds"
    defaults = flatten(cfg)
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_.]+)` \| `([^`]+)` \|", text, flags=re.M)
    assert rows, "docs/CONFIGS.md has no | `KEY` | `default` | rows: its table layout changed"
    wrong = []
    for key, default in rows:
        try:
            written = ast.literal_eval(default)
        except (ValueError, SyntaxError):
            wrong.append(f"{key}: {default} is not a Python literal")
            continue
        if key in defaults and not same_value(written, defaults[key]):
            wrong.append(f"{key}: {default} (the default is {defaults[key]!r})")
    assert not wrong, f"docs/CONFIGS.md: {wrong}"


def same_value(written, default):
    """``written`` (a literal in the docs) is ``default``, a tuple and a list of the same values alike."""
    if isinstance(default, (list, tuple)) and isinstance(written, (list, tuple)):
        return len(written) == len(default) and all(same_value(w, d) for w, d in zip(written, default))
    return type(written) is type(default) and written == default


# Self-tests: each check fails on a made-up name and passes on the real one.
SELF_TEST_DOC = os.path.join(REPO, "docs", "SELF_TEST.md")


@pytest.mark.parametrize(
    "made_up, real, problem",
    [
        ("`configs/r49.yaml`", "`configs/r50.yaml`", "missing file configs/r49.yaml"),
        ("`tools/convert_weight.py`", "`tools/convert_weights.py`", "missing file tools/convert_weight.py"),
        ("`train_nets.py`", "`train_net.py`", "missing file train_nets.py"),
        ("`tests/test_docs.py::test_no_such_test`", "`tests/test_docs.py::test_anchors_are_githubs`",
         "missing file tests/test_docs.py::test_no_such_test"),
        ("[the zoo](MODEL_ZOOS.md)", "[the zoo](MODEL_ZOO.md)", "broken link MODEL_ZOOS.md"),
        ("[home](../README.mdx)", "[home](../README.md)", "broken link ../README.mdx"),
        ("[errors](TROUBLESHOOTING.md#weight)", "[errors](TROUBLESHOOTING.md#weights-modelweights)",
         "broken link TROUBLESHOOTING.md#weight"),
        ("`MODEL.DANET.KEY_REDUCTIONS 4`", "`MODEL.DANET.KEY_REDUCTION 4`",
         "unknown config key MODEL.DANET.KEY_REDUCTIONS"),
        ("`INPUT.COLOR_AUG True`", "`INPUT.PHOTOMETRIC_DISTORTION.ENABLED True`", "unknown config key INPUT.COLOR_AUG"),
        ("```yaml\nMODEL:\n  DANET:\n    MEMORY_SAVINGS: True\n```",
         "```yaml\nMODEL:\n  DANET:\n    MEMORY_SAVING: True\n```", "unknown config key MODEL.DANET.MEMORY_SAVINGS"),
        ("```bash\npython demo.py --config-file configs/demo.yaml --inputs a.png --output out/\n```",
         "```bash\npython demo.py --config-file configs/demo.yaml --input a.png --output out/\n```",
         "unknown option demo.py --inputs"),
        ("```bash\npython train_net.py --config-file configs/r50.yaml \\\n    --num-gpu 8\n```",
         "```bash\npython train_net.py --config-file configs/r50.yaml \\\n    --num-gpus 8\n```",
         "unknown option train_net.py --num-gpu"),
        ("`python train_net.py --config-file configs/r50.yaml --opts SEED 1`",
         "`python demo.py --config-file configs/r50.yaml --opts SEED 1`", "unknown option train_net.py --opts"),
        ("`make tests`", "`make test`", "make target tests"),
        ("`make web-demo WEB_PORT=9000`", "`make web-demo WEB_DEMO_PORT=9000`", "make variable WEB_PORT"),
    ],
)  # fmt: skip
def test_each_check_fails_on_a_made_up_name(made_up, real, problem):
    assert problem in doc_problems(SELF_TEST_DOC, made_up), doc_problems(SELF_TEST_DOC, made_up)
    assert doc_problems(SELF_TEST_DOC, real) == []


def test_what_is_not_checked_by_convention():
    text = (
        "`mmsegmentation/configs/danet/README.md`, `junfu1115/DANet/danet/option.py`, `output/r50/model_final.pth`,\n"
        "`configs/<name>.yaml`, `datasets/prepare_<name>.py`, `my_data.yaml`,\n"
        "<!-- `configs/not_yet.yaml` and [a picture](not_yet.png) -->\n"
        "```bash\npython tools/visualize_attention.py --config-file configs/demo.yaml --input a.png "
        "--output docs/not_yet/ --opts MODEL.WEIGHTS x.pth\n```\n"
    )
    assert doc_problems(SELF_TEST_DOC, text) == []


def test_anchors_are_githubs():
    anchors = github_anchors(os.path.join(REPO, "docs", "GPU_CHECK.md"))
    assert {
        "checking-the-cuda-paths-make-gpu-check",
        "1-teststest_cudapy",
        "2-the-gpu-cases-of-the-benchmarks",
    } <= anchors


def test_configs_doc_check_fails_on_a_wrong_default():
    assert not same_value(ast.literal_eval("8"), 4)
    assert not same_value(ast.literal_eval('"qkv"'), "seed")
    assert not same_value(ast.literal_eval("1"), True)
    assert same_value(ast.literal_eval("(0.5, 2.0)"), (0.5, 2.0)) and same_value(ast.literal_eval("[]"), [])
    assert same_value(ast.literal_eval("None"), None) and same_value(ast.literal_eval('("SIGTERM",)'), ("SIGTERM",))
