# The README's two commands: `make book` (execute the book with the cpu preset and render it)
# and `make test` (unit tests, every notebook with the smoke preset, the rendered book checked in a browser).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= cpu
ONLY   ?=
PYTEST_ARGS ?=

.PHONY: setup book test unit clean

setup: $(STAMP)

# Reinstalls only when the lock file or pyproject changes. Bytecode is compiled at install time because
# PYTHONDONTWRITEBYTECODE may be set, and torch imported from source costs every process many seconds.
$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || uv venv --quiet --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --compile-bytecode -r requirements.lock
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

book: setup
	$(BIN)/poselib book --preset $(PRESET) $(if $(ONLY),--only '$(ONLY)')

# pytest executes every notebook (smoke preset) into _build/smoke; the book is then rendered from
# exactly those outputs, and the site tests open it in headless chromium.
test: setup
	$(BIN)/python -m pytest -m "not site" $(PYTEST_ARGS)
	$(BIN)/poselib book --preset smoke --no-execute
	$(BIN)/python -m pytest -m site $(PYTEST_ARGS)

unit: setup
	$(BIN)/python -m pytest -m "not notebook and not site" $(PYTEST_ARGS)

clean:
	rm -rf _build .pytest_cache
