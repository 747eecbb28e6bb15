# Set-up and everyday commands. Each target creates .venv by itself on a fresh machine.
#   make demo   install, then plan and render the example story
#   make test   install (with test extras), then run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: on a CPU-only machine with a local 2.13.0 CPU wheel this avoids pulling
# gigabytes of CUDA packages. On a GPU machine override it, e.g. `make demo TORCH=torch`.
TORCH  ?= torch==2.13.0
EXAMPLE ?= examples/office_day.yaml
OUT    ?= out

.PHONY: demo test install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/longtake validate $(EXAMPLE)
	$(BIN)/longtake plan $(EXAMPLE) --shots
	$(BIN)/longtake render $(EXAMPLE) -o $(OUT)/example.mp4

test: install-dev
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_writer.py
	$(BIN)/python bench/bench_world.py
	$(BIN)/python bench/bench_dit.py
	$(BIN)/python bench/bench_vae.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
