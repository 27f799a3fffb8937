# One-command setup, tests and demo. Everything runs inside .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC := torch==2.14.1 torchvision==0.29.1
DETECTRON2_SPEC ?= sal-detectron2==0.7.2
export DETECTRON2_SPEC

# The export and test extras (requirements-export.txt) and the web demo's test
# extra (requirements-web.txt) are installed with numpy held at the version
# requirements.txt gave (<2), so pip cannot upgrade it.
# The stamp is keyed on everything that decides what gets installed, so a
# second `make setup` with nothing changed costs nothing.
SETUP_KEY := $(shell cat requirements.txt requirements-export.txt requirements-web.txt pyproject.toml tools/install_detectron2.sh | sha1sum | cut -c1-12)-$(shell echo '$(TORCH_SPEC) $(DETECTRON2_SPEC)' | sha1sum | cut -c1-8)
STAMP := $(VENV)/.setup-$(SETUP_KEY)

.PHONY: setup test clean
setup: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -r requirements.txt
	tools/install_detectron2.sh $(VENV)
	$(PY) -c 'import numpy; print(f"numpy=={numpy.__version__}")' > $(VENV)/numpy-constraint.txt
	$(PY) -m pip install -q -r requirements-export.txt -c $(VENV)/numpy-constraint.txt
	$(PY) -m pip install -q -r requirements-web.txt -c $(VENV)/numpy-constraint.txt
	# The package itself, editable and without its (already installed) dependencies:
	# `import danet` then works from any directory.
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.setup-*
	touch $@

# mmsegmentation as a test oracle (tests/test_parity_mmseg.py), kept out of the
# runtime environment: installed without dependencies (mmcv-lite would pull
# opencv-python beside opencv-python-headless) into a directory the parity tests
# put on sys.path, with the pure-Python packages mmseg imports to build DANet.
# mmcv.ops (compiled) is replaced by tests/reference/mmcv_ops.py.
REFERENCE_DIR := .reference
REFERENCE_SPEC := mmsegmentation==1.2.2 mmengine==0.10.7 mmcv-lite==2.1.0 \
	addict==2.4.0 yapf==0.43.0 rich==15.0.0 ftfy==6.3.1 wcwidth==0.9.4 regex==2026.11.19
REFERENCE_STAMP := $(REFERENCE_DIR)/.installed-$(shell echo '$(REFERENCE_SPEC)' | sha1sum | cut -c1-12)

.PHONY: reference
reference: $(REFERENCE_STAMP)

$(REFERENCE_STAMP): | $(STAMP)
	rm -rf $(REFERENCE_DIR)
	$(PY) -m pip install -q --no-deps --target $(REFERENCE_DIR) $(REFERENCE_SPEC)
	# The mmsegmentation wheel ships its own top-level tests package.
	rm -rf $(REFERENCE_DIR)/tests
	touch $@

# The CI suite: CPU only, no downloads, well under 15 minutes on 2 cores. The
# parity tests fail instead of skipping when the reference is missing.
test: setup reference
	DANET_REQUIRE_REFERENCE=1 $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(REFERENCE_DIR) output

# The CUDA paths on a machine with a GPU (docs/GPU_CHECK.md): tests/test_cuda.py,
# then the GPU cases of the benchmarks, each printing time and memory per case.
# Without a GPU it stops at the first line. DANET_REQUIRE_CUDA=2 on two GPUs also
# requires the DDP test.
DANET_REQUIRE_CUDA ?= 1
GPU_CHECK_OUT := output/gpu_check
.PHONY: gpu-check
gpu-check: setup reference
	@$(PY) -c 'import sys, torch; torch.cuda.is_available() or sys.exit("make gpu-check: no CUDA device is visible: run it on a machine with a GPU")'
	DANET_REQUIRE_CUDA=$(DANET_REQUIRE_CUDA) $(PY) -m pytest -q -s -rs tests/test_cuda.py
	$(PY) benchmarks/bench_attention.py --device cuda --sizes 64x64,128x128,128x256 --batches 1,2 \
		--impls naive,chunked,sdpa --rounds 3 --output $(GPU_CHECK_OUT)/bench_attention.json
	$(PY) benchmarks/bench_model.py --device cuda --size 768 --batch 1 --iters 5 --impls naive,auto \
		--output $(GPU_CHECK_OUT)/bench_model.json
	$(PY) benchmarks/bench_peers.py --device cuda --depths 50 --train-sizes 512x1024 --infer-sizes 1024x2048 \
		--iters 3 --output $(GPU_CHECK_OUT)/bench_peers.json

# End to end on CPU (README "Demo"): generate a Cityscapes-format dataset, make its
# labelTrainIds, train and evaluate configs/demo.yaml, print the metrics, save pictures
# of predictions and of what the attention modules attend to.
DEMO_DATASETS ?= datasets
.PHONY: demo
demo: setup
	$(PY) datasets/make_toy_cityscapes.py --out $(DEMO_DATASETS)/toy_cityscapes --width 384 --height 192 --seed 0
	$(PY) datasets/prepare_cityscapes.py --root $(DEMO_DATASETS)/toy_cityscapes
	DETECTRON2_DATASETS=$(DEMO_DATASETS) $(PY) train_net.py --config-file configs/demo.yaml
	$(PY) demo.py --config-file configs/demo.yaml --ground-truth --output output/demo/pictures \
		--input "$(DEMO_DATASETS)/toy_cityscapes/leftImg8bit/val/*/*_00000[0-7]_*_leftImg8bit.png" \
		--opts MODEL.WEIGHTS output/demo/model_final.pth
	$(PY) tools/visualize_attention.py --config-file configs/demo.yaml --output output/demo/attention \
		--input "$(DEMO_DATASETS)/toy_cityscapes/leftImg8bit/val/*/*_00000[0-3]_*_leftImg8bit.png" \
		--opts MODEL.WEIGHTS output/demo/model_final.pth

# The web demo (docs/WEB_DEMO.md) of the model `make demo` trained, offering its
# generated val images as samples: open http://127.0.0.1:$(WEB_DEMO_PORT)/
WEB_DEMO_PORT ?= 8080
.PHONY: web-demo
web-demo: setup
	@test -f output/demo/model_final.pth || { echo "output/demo/model_final.pth is missing: run make demo first"; exit 1; }
	DETECTRON2_DATASETS=$(DEMO_DATASETS) $(PY) tools/web_demo.py --config-file configs/demo.yaml --port $(WEB_DEMO_PORT) \
		MODEL.WEIGHTS output/demo/model_final.pth
