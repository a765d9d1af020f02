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

# The main job: synthesise films (procedural, and real films from data/films with inserted masses),
# train on the CPU (configs/demo.yaml), run detection over the held-out synthetic split with overlays,
# then score the checkpoint on that split and, where ../shared is beside the project, on the held-out
# real-film test set (films never used in training).
# Procedural films are synthesised at 800-1600 px (the default goes to 2500): the demo model sees 768 px.
SYNTH := $(BIN)/calcidet synth
REAL_FILMS := data/films/manifest.csv
demo: $(STAMP)
	@test -f $(DEMO_OUT)/synth/train/annotations.json || $(SYNTH) --out $(DEMO_OUT)/synth/train --n 560 --seed 1 --max-size 1600
	@test -f $(DEMO_OUT)/synth/val/annotations.json || $(SYNTH) --out $(DEMO_OUT)/synth/val --n 100 --seed 2 --max-size 1600
	@test -f $(DEMO_OUT)/synth/test/annotations.json || $(SYNTH) --out $(DEMO_OUT)/synth/test --n 200 --seed 3 --max-size 1600 --preview $(DEMO_OUT)/synth/test/preview.png
	@test -f $(DEMO_OUT)/real/train/annotations.json || $(SYNTH) --out $(DEMO_OUT)/real/train --n 1120 --seed 11 --backgrounds $(REAL_FILMS) --background-role train --preview $(DEMO_OUT)/real/train/preview.png
	@test -f $(DEMO_OUT)/real/val/annotations.json || $(SYNTH) --out $(DEMO_OUT)/real/val --n 100 --seed 12 --backgrounds $(REAL_FILMS) --background-role val
	rm -rf $(DEMO_OUT)/runs
	@# The config names demo_out/; the paths are given again so that DEMO_OUT=DIR keeps everything in DIR.
	$(BIN)/calcidet fit --config configs/demo.yaml \
	  --data.train_json '[$(DEMO_OUT)/synth/train/annotations.json, $(DEMO_OUT)/real/train/annotations.json]' \
	  --data.val_json '[$(DEMO_OUT)/synth/val/annotations.json, $(DEMO_OUT)/real/val/annotations.json]' \
	  --data.test_json $(DEMO_OUT)/synth/test/annotations.json --trainer.default_root_dir $(DEMO_OUT)/runs \
	  --trainer.logger.init_args.save_dir $(DEMO_OUT)/runs --checkpoint.dirpath $(DEMO_OUT)/runs/checkpoints
	@# One detect run serves review (overlays at the operating threshold) and evaluation (every box >= 0.05).
	@# ONNX Runtime: the same boxes as the torch backend (parity-tested), about twice as fast on a CPU.
	$(BIN)/calcidet detect $(DEMO_OUT)/synth/test/images --checkpoint $(DEMO_OUT)/runs/checkpoints/last.ckpt \
	  --output $(DEMO_OUT)/detect --overlays --overwrite --gt $(DEMO_OUT)/synth/test/annotations.json \
	  --backend onnxruntime
	@# Held-out real films: built from ../shared when it is there (a user's clone skips this line's set).
	$(BIN)/python benchmarks/real_film_testset.py --out $(DEMO_OUT)/real_test
	@# calcidet evaluate on both sets (the synthetic one from the detect run above), printed side by side.
	$(BIN)/python benchmarks/generalization.py --checkpoint $(DEMO_OUT)/runs/checkpoints/last.ckpt \
	  --set synthetic=$(DEMO_OUT)/synth/test --detections synthetic=$(DEMO_OUT)/detect \
	  --set real=$(DEMO_OUT)/real_test --out $(DEMO_OUT)/report --backend onnxruntime
	@echo
	@echo "Synthetic data and previews: $(DEMO_OUT)/synth/, $(DEMO_OUT)/real/ (preview.png)"
	@echo "Checkpoints:                 $(DEMO_OUT)/runs/checkpoints/ (last.ckpt, best-*.ckpt)"
	@echo "Detections:                  $(DEMO_OUT)/detect/ (detections.csv, .json, images.csv, overlays/ at the operating threshold)"
	@echo "Evaluation reports:          $(DEMO_OUT)/report/{synthetic,real}/report/ (metrics.json, froc.png, pr_curve.png)"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
