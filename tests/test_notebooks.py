"""The book's notebooks: conventions of the sources (fast) and execution with the smoke preset (marker ``notebook``).

Executed copies go to ``_build/smoke/``, the folder ``poselib book --preset smoke`` uses, so that
``poselib book --preset smoke --no-execute`` renders exactly what these tests executed.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import nbformat
import papermill
import pytest

from poselib.book import KERNEL_NAME, NotebookExecutionError, book_notebooks, build_dir_for, execute_notebook
from poselib.presets import PRESETS

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [p.relative_to(REPO_ROOT).as_posix() for p in book_notebooks(REPO_ROOT, must_exist=False)]
#: Per-cell limit for the smoke preset: far above what a smoke cell needs, low enough to stop a hung kernel.
SMOKE_CELL_TIMEOUT_S = 900
IMAGE_MIMETYPES = ("image/png", "image/svg+xml", "image/jpeg")


def _source(rel: str) -> Path:
    path = REPO_ROOT / rel
    if not path.is_file():
        pytest.fail(f"_toc.yml lists {rel}, but the file does not exist", pytrace=False)
    return path


def test_toc_lists_notebooks() -> None:
    assert NOTEBOOKS, "_toc.yml lists no .ipynb file"
    assert NOTEBOOKS[-1] == "notebooks/appendix/environment.ipynb", "the environment appendix should run last"


@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_conventions(rel: str) -> None:
    """One ``parameters`` cell defining PRESET, DEVICE="auto" and SEED; no outputs stored; kernel python3."""
    path = _source(rel)
    nb = nbformat.read(path, as_version=4)
    problems = []

    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"expected exactly one cell tagged 'parameters', found {len(tagged)} (cells {tagged})")
    elif nb.cells[tagged[0]].cell_type != "code":
        problems.append(f"cell {tagged[0]} is tagged 'parameters' but is not a code cell")
    if any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        problems.append("has a cell tagged 'injected-parameters': this is an executed copy, not a source")

    params = papermill.inspect_notebook(str(path))
    missing = {"PRESET", "DEVICE", "SEED"} - set(params)
    if missing:
        problems.append(f"the parameters cell does not define {sorted(missing)}")
    else:
        defaults = {}
        for name in ("PRESET", "DEVICE", "SEED"):
            try:
                defaults[name] = ast.literal_eval(params[name]["default"])
            except (ValueError, SyntaxError):
                problems.append(f"{name} = {params[name]['default']} is not a literal")
        if "PRESET" in defaults and defaults["PRESET"] not in PRESETS:
            problems.append(f"PRESET = {defaults['PRESET']!r} is not one of {PRESETS}")
        if "DEVICE" in defaults and defaults["DEVICE"] != "auto":
            problems.append(f'DEVICE = {defaults["DEVICE"]!r}; the default must be "auto"')
        if "SEED" in defaults and not isinstance(defaults["SEED"], int):
            problems.append(f"SEED = {defaults['SEED']!r} is not an integer")

    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    if with_outputs:
        problems.append(f"stored with outputs or execution counts in cells {with_outputs}; clear them before committing")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        problems.append(f"kernelspec is {kernel!r}, expected {KERNEL_NAME!r}")

    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)


@pytest.mark.notebook
@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_executes(rel: str, notebook_times: dict[str, float]) -> None:
    """Execute with PRESET="smoke" into _build/smoke/; the executed copy must show at least one figure."""
    src = _source(rel)
    dst = build_dir_for("smoke", REPO_ROOT) / rel
    start = time.perf_counter()
    try:
        notebook_times[rel] = execute_notebook(src, dst, "smoke", timeout=SMOKE_CELL_TIMEOUT_S, root=REPO_ROOT)
    except NotebookExecutionError as err:
        notebook_times[rel] = time.perf_counter() - start
        pytest.fail(str(err), pytrace=False)

    executed = nbformat.read(dst, as_version=4)
    images = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if any(m in o.get("data", {}) for m in IMAGE_MIMETYPES)
    ]
    assert images, f"{rel}: executed without error but shows no figure; every chapter shows at least one"
