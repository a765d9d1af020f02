# calcidet: `make demo` runs the main job end to end on synthetic films; `make test` runs the tests.
# Both create .venv and install the project on first use, so each works alone on a fresh machine.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job: synthesise train/val/test films, train on the CPU (configs/demo.yaml), test on the
# held-out split, run detection over its folder and score the detections.
# Films are synthesised at 800-1600 px (the default goes to 2500): the demo model sees 384 px, and
# smaller films halve the synthesis time.
demo: $(STAMP)
	@test -f $(DEMO_OUT)/synth/train/annotations.json || $(BIN)/calcidet synth --out $(DEMO_OUT)/synth/train --n 800 --seed 1 --max-size 1600
	@test -f $(DEMO_OUT)/synth/val/annotations.json || $(BIN)/calcidet synth --out $(DEMO_OUT)/synth/val --n 150 --seed 2 --max-size 1600
	@test -f $(DEMO_OUT)/synth/test/annotations.json || $(BIN)/calcidet synth --out $(DEMO_OUT)/synth/test --n 200 --seed 3 --max-size 1600 --preview $(DEMO_OUT)/synth/test/preview.png
	rm -rf $(DEMO_OUT)/runs
	$(BIN)/calcidet fit --config configs/demo.yaml
	$(BIN)/calcidet test --config configs/demo.yaml --ckpt_path $(DEMO_OUT)/runs/checkpoints/last.ckpt
	$(BIN)/calcidet detect $(DEMO_OUT)/synth/test/images --checkpoint $(DEMO_OUT)/runs/checkpoints/last.ckpt \
	  --output $(DEMO_OUT)/detect --overlays --overwrite
	@# Evaluation needs the whole score range, not only what passes the operating threshold.
	$(BIN)/calcidet detect $(DEMO_OUT)/synth/test/images --checkpoint $(DEMO_OUT)/runs/checkpoints/last.ckpt \
	  --output $(DEMO_OUT)/detect_all --threshold 0.05 --overwrite
	$(BIN)/calcidet evaluate --gt $(DEMO_OUT)/synth/test/annotations.json --pred $(DEMO_OUT)/detect_all/detections.csv \
	  --out $(DEMO_OUT)/report
	@echo
	@echo "Synthetic data and preview: $(DEMO_OUT)/synth/ (test/preview.png)"
	@echo "Checkpoints:               $(DEMO_OUT)/runs/checkpoints/ (last.ckpt, best-*.ckpt)"
	@echo "Detections:                $(DEMO_OUT)/detect/ (operating threshold; detections.csv, images.csv, overlays/)"
	@echo "Evaluation report:         $(DEMO_OUT)/report/ (metrics.json, froc.png, pr_curve.png)"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
