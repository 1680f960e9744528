# robustlens: `make quickstart` trains the quickstart recipe; `make test` runs the test suite.
# Both create the virtual environment in .venv and install the project first if needed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.robustlens-installed

.PHONY: install quickstart test test-slow clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	@touch $(INSTALLED)

quickstart: $(INSTALLED)
	WANDB_MODE=offline $(PY) train.py fit --config configs/quickstart.yaml

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: $(INSTALLED)
	@WANDB_MODE=offline $(PY) -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

test-slow: $(INSTALLED)
	WANDB_MODE=offline $(PY) -m pytest -m slow

clean:
	rm -rf runs wandb lightning_logs .pytest_cache
