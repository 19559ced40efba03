"""The book runner: execute the notebooks with papermill, stage the book, render it with jupyter-book.

Sources are never modified. Everything a run produces lives in one build folder per preset::

    _build/<preset>/
        _config.yml, _toc.yml, book/    copies of the book sources (``stage_book``)
        notebooks/.../*.ipynb           executed notebooks, at the same relative paths as their sources
        _build/html/index.html          the rendered book (``build_html``)

Notebooks are the ``.ipynb`` entries of ``_toc.yml``, in book order (``book_notebooks``). Each is executed by
papermill with the parameters ``PRESET`` and ``DEVICE="auto"`` (``SEED`` keeps the notebook's default), in a
``python3`` kernel whose working directory is the executed copy's folder and whose environment carries
``POSELIB_ROOT`` (the checkout, so poselib finds data, cache and results there) and ``POSELIB_PRESET``.

Each executed notebook records how it was made in ``metadata.posebook`` (preset, source hash, status, seconds),
which lets ``run_book(execute=False)`` render exactly what was executed earlier, for example by the notebook tests,
and refuse notebooks that are missing or failed.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from poselib.paths import project_root
from poselib.presets import check_preset

TOC_FILE = "_toc.yml"
CONFIG_FILE = "_config.yml"
BOOK_DIR = "book"
KERNEL_NAME = "python3"
#: Tag papermill gives the cell it inserts after the ``parameters`` cell.
INJECTED_TAG = "injected-parameters"
#: Tag papermill gives the error banner cells it inserts at the top of a failed notebook.
ERROR_MARKER_TAG = "papermill-error-cell-tag"
#: Key in the notebook metadata where the runner records how an executed copy was made.
METADATA_KEY = "posebook"
#: Lines of a failing cell's source quoted in error messages.
SOURCE_LINES_SHOWN = 4


class NotebookExecutionError(RuntimeError):
    """A notebook failed while papermill executed it.

    Attributes name the notebook (``notebook``, the source path), the failing cell (``cell_index``: 0-based
    index in the *source* notebook, ``None`` when the failure happened outside a source cell), its source
    (``cell_source``), the exception (``ename``, ``evalue``) and where the partly executed copy was kept
    (``output_path``).
    """

    def __init__(
        self,
        notebook: Path,
        *,
        cell_index: int | None,
        cell_source: str,
        ename: str,
        evalue: str,
        output_path: Path,
        execution_count: int | None = None,
        n_cells: int | None = None,
    ) -> None:
        self.notebook = Path(notebook)
        self.cell_index = cell_index
        self.cell_source = cell_source
        self.ename = ename
        self.evalue = evalue
        self.output_path = Path(output_path)
        self.execution_count = execution_count
        self.n_cells = n_cells
        super().__init__(self._message())

    def _message(self) -> str:
        if self.cell_index is None:
            where = "before reaching a source cell" if not self.cell_source else "in the injected parameters cell"
        else:
            where = f"in cell {self.cell_index + 1}"
            if self.n_cells is not None:
                where += f" of {self.n_cells}"
            where += f" (index {self.cell_index}"
            if self.execution_count is not None:
                where += f", execution count {self.execution_count}"
            where += ")"
        lines = [f"{self.notebook}: failed {where}"]
        source_lines = self.cell_source.splitlines()
        for line in source_lines[:SOURCE_LINES_SHOWN]:
            lines.append(f"    | {line}")
        if len(source_lines) > SOURCE_LINES_SHOWN:
            lines.append(f"    | ... ({len(source_lines) - SOURCE_LINES_SHOWN} more lines)")
        lines.append(f"  {self.ename}: {self.evalue}".rstrip())
        lines.append(f"  the partly executed notebook is kept at {self.output_path}")
        return "\n".join(lines)


class BookBuildError(RuntimeError):
    """``jupyter-book build`` failed (a warning under ``-W``, a missing page, a bad configuration)."""


@dataclass
class NotebookRun:
    """One row of the runner's timing table."""

    notebook: str
    status: str  # "executed", "reused", "not executed", "failed", "recorded"
    seconds: float | None


# ---------------------------------------------------------------------------------------------------------------------
# Table of contents


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err


def _toc_entries(toc: Any, toc_path: Path) -> Iterator[dict]:
    """Yield the toc's entries (dicts with ``file``, ``glob`` or ``url``) in reading order."""
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path}: expected a jupyter-book table of contents with a 'root' entry")
    yield {"file": toc["root"]}

    def walk(node: Any) -> Iterator[dict]:
        if isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            if any(key in node for key in ("file", "glob", "url")):
                yield node
            for key in ("parts", "chapters", "sections"):
                if key in node:
                    yield from walk(node[key])
        else:
            raise ValueError(f"{toc_path}: unexpected toc entry {node!r}")

    for key in ("parts", "chapters", "sections"):
        if key in toc:
            yield from walk(toc[key])


def book_pages(root: str | Path | None = None) -> list[str]:
    """The pages of the book as Sphinx document names (paths without suffix, e.g. ``book/intro``), in
    ``_toc.yml`` order; the rendered page of ``name`` is ``_build/html/<name>.html``. ``glob`` and ``url`` entries
    are not pages of their own and are left out."""
    root = Path(root) if root is not None else project_root()
    toc_path = root / TOC_FILE
    names = []
    for entry in _toc_entries(_load_yaml(toc_path), toc_path):
        if "file" in entry:
            name = str(entry["file"])
            for suffix in (".ipynb", ".md", ".rst"):
                if name.endswith(suffix):
                    name = name[: -len(suffix)]
            names.append(name)
    return names


def book_notebooks(root: str | Path | None = None, *, must_exist: bool = True) -> list[Path]:
    """The notebooks of the book, as absolute paths in ``_toc.yml`` order.

    An entry is a notebook when it ends in ``.ipynb``, or has no suffix and ``<entry>.ipynb`` exists; ``glob``
    entries contribute their matching notebooks, sorted. With ``must_exist`` (the default) a listed notebook that
    does not exist raises ``FileNotFoundError`` naming ``_toc.yml`` and the entry.
    """
    root = Path(root) if root is not None else project_root()
    toc_path = root / TOC_FILE
    toc = _load_yaml(toc_path)
    found: list[Path] = []
    for entry in _toc_entries(toc, toc_path):
        if "glob" in entry:
            pattern = str(entry["glob"])
            pattern = pattern if pattern.endswith(".ipynb") else pattern + ".ipynb"
            found.extend(sorted(root.glob(pattern)))
            continue
        if "file" not in entry:
            continue
        name = str(entry["file"])
        if name.endswith(".ipynb"):
            path = root / name
        elif (root / f"{name}.ipynb").is_file():
            path = root / f"{name}.ipynb"
        else:
            if must_exist and not any((root / f"{name}{suffix}").is_file() for suffix in (".md", ".rst", ".ipynb")):
                raise FileNotFoundError(f"{toc_path}: entry {name!r} matches no .md, .rst or .ipynb file")
            continue
        if must_exist and not path.is_file():
            raise FileNotFoundError(f"{toc_path}: lists {name!r}, but {path} does not exist")
        found.append(path)
    seen: set[Path] = set()
    unique = [p for p in found if not (p in seen or seen.add(p))]
    return unique


# ---------------------------------------------------------------------------------------------------------------------
# Executing one notebook


def build_dir_for(preset: str, root: str | Path | None = None) -> Path:
    """The build folder of a preset: ``<root>/_build/<preset>``."""
    root = Path(root) if root is not None else project_root()
    return root / "_build" / check_preset(preset)


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def kernel_environment(preset: str, root: Path) -> Iterator[None]:
    """Set the environment kernels inherit while notebooks run, and restore it afterwards.

    ``POSELIB_ROOT`` points poselib at the checkout and ``POSELIB_PRESET`` names the preset. A non-inline
    ``MPLBACKEND`` (``agg`` is common in CI) is removed: with it, figures never reach the notebook outputs.
    ``TQDM_DISABLE=1`` keeps progress bars out of the rendered pages, where every update would become a line;
    the runner's own progress and a notebook opened by hand still show them.
    """
    changes: dict[str, str | None] = {
        "POSELIB_ROOT": str(Path(root).resolve()),
        "POSELIB_PRESET": preset,
        "TQDM_DISABLE": "1",
    }
    backend = os.environ.get("MPLBACKEND")
    if backend is not None and "inline" not in backend:
        changes["MPLBACKEND"] = None
    saved = {key: os.environ.get(key) for key in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _strip_error_markers(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]


def _source_position(cells: list[nbformat.NotebookNode], index: int) -> tuple[int | None, int]:
    """Map an index among the executed cells to (index in the source notebook or None, number of source cells)."""
    injected = [i for i, c in enumerate(cells) if INJECTED_TAG in c.get("metadata", {}).get("tags", [])]
    n_source = len(cells) - len(injected)
    if index in injected:
        return None, n_source
    return index - sum(1 for i in injected if i < index), n_source


def _last_started_cell(cells: list[nbformat.NotebookNode]) -> int | None:
    """Index of the last cell papermill started (its ``start_time`` is set), or None."""
    started = [i for i, c in enumerate(cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1] if started else None


#: numpy >= 2 scalar reprs, e.g. ``np.float64(0.25)``: what a ``myst_nb.glue`` of a numpy scalar stores.
_NUMPY_SCALAR_REPR = re.compile(r"^np\.(?:float|int|uint|bool|complex|str|bytes)_?\d*\((.*)\)$", re.DOTALL)


def _plain_glue_value(text: str) -> str:
    """``np.float64(0.25)`` -> ``0.25``: numpy 2 scalar reprs break ``{glue:text}`` format specs such as ``:.2f``."""
    match = _NUMPY_SCALAR_REPR.match(text.strip())
    return match.group(1) if match else text


def _finalise(dst: Path, record: dict[str, Any]) -> None:
    """Tag the injected parameters cell ``hide-input``, give glued numpy scalars their plain value, and record
    how the copy was made."""
    if not dst.is_file():
        return
    nb = nbformat.read(dst, as_version=4)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and "hide-input" not in tags:
            tags.append("hide-input")
        for output in cell.get("outputs", []):
            if "scrapbook" in output.get("metadata", {}):
                for mime, value in output.get("data", {}).items():
                    if mime.endswith("text/plain") and isinstance(value, str):
                        output["data"][mime] = _plain_glue_value(value)
    nb.metadata[METADATA_KEY] = record
    nbformat.write(nb, dst)


def execute_notebook(
    src: str | Path,
    dst: str | Path,
    preset: str,
    *,
    timeout: float | None = None,
    parameters: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    progress: bool = False,
) -> float:
    """Execute ``src`` with papermill into ``dst`` and return the wall time in seconds.

    Parameters injected: ``PRESET=preset`` and ``DEVICE="auto"``, updated by ``parameters``. ``timeout`` limits
    each cell (seconds; ``None``: no limit). The kernel is ``python3``, runs in ``dst``'s folder, and sees
    ``POSELIB_ROOT=root`` (default: the checkout) and ``POSELIB_PRESET=preset``. The non-notebook files of
    ``src``'s folder are copied next to ``dst`` first, so relative paths to them keep working.

    On any failure (an exception in a cell, a cell timeout, a dead kernel) the partly executed notebook is kept
    at ``dst`` and ``NotebookExecutionError`` is raised naming the notebook, the cell (position, first lines of
    its source) and the exception.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    check_preset(preset)
    src, dst = Path(src), Path(dst)
    root = Path(root) if root is not None else project_root()
    if not src.is_file():
        raise FileNotFoundError(f"{src}: notebook not found")
    if src.resolve() == dst.resolve():
        raise ValueError(f"{src}: refusing to execute a notebook onto itself; sources stay without outputs")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)  # what is left at dst after a failure must come from this run
    if src.parent.resolve() not in (dst.parent.resolve(), root.resolve()):
        _copy_assets(src.parent, dst.parent)  # files the notebook reads next to itself (images, small tables)
    values: dict[str, Any] = {"PRESET": preset, "DEVICE": "auto"}
    values.update(parameters or {})
    record: dict[str, Any] = {
        "preset": preset,
        "parameters": values,
        "source": _display(src, root),
        "source_sha256": _sha256(src),
        "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }

    start = time.perf_counter()
    failure: BaseException | None = None
    try:
        with kernel_environment(preset, root):
            papermill.execute_notebook(
                str(src),
                str(dst),
                parameters=values,
                kernel_name=KERNEL_NAME,
                cwd=str(dst.parent),
                progress_bar=progress,
                execution_timeout=timeout,
            )
    except Exception as err:  # noqa: BLE001 - every failure is reported with the notebook and cell below
        failure = err
    seconds = time.perf_counter() - start
    record.update(seconds=round(seconds, 3), status="failed" if failure else "ok")
    _finalise(dst, record)
    if failure is None:
        return seconds

    cells = _strip_error_markers(nbformat.read(dst, as_version=4)) if dst.is_file() else []
    if isinstance(failure, PapermillExecutionError):
        index: int | None = failure.cell_index
        ename, evalue = failure.ename, str(failure.evalue)
        source = failure.source or ""
        count = failure.exec_count
    else:
        index = _last_started_cell(cells)
        ename = type(failure).__name__
        if isinstance(failure, CellTimeoutError):
            evalue = f"the cell did not finish within the {timeout} s per-cell limit (--timeout)"
        elif isinstance(failure, DeadKernelError):
            evalue = f"the kernel died (out of memory? a crash in native code?): {failure}"
        else:
            evalue = str(failure)
        source = cells[index].get("source", "") if index is not None else ""
        count = cells[index].get("execution_count") if index is not None else None
    if index is not None and cells:
        source_index, n_source = _source_position(cells, index)
    else:
        source_index, n_source = None, None
    raise NotebookExecutionError(
        Path(_display(src, root)),
        cell_index=source_index,
        cell_source=source,
        ename=ename,
        evalue=evalue,
        output_path=Path(_display(dst, root)),
        execution_count=count,
        n_cells=n_source,
    ) from failure


def executed_status(src: Path, dst: Path, preset: str | None = None) -> str:
    """State of the executed copy ``dst`` of ``src``.

    ``"ok"`` (executed without error, same source), ``"stale"`` (executed without error, but the source changed
    since), ``"failed"``, ``"not executed"`` (a staged source copy), ``"wrong preset"`` or ``"missing"``.
    """
    if not dst.is_file():
        return "missing"
    try:
        nb = nbformat.read(dst, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable copy is as good as none
        return "missing"
    record = nb.metadata.get(METADATA_KEY, {})
    status = record.get("status")
    if status == "failed":
        return "failed"
    if status != "ok":
        return "not executed"
    if preset is not None and record.get("preset") != preset:
        return "wrong preset"
    if src.is_file() and record.get("source_sha256") != _sha256(src):
        return "stale"
    return "ok"


def _recorded_seconds(dst: Path) -> float | None:
    try:
        return float(nbformat.read(dst, as_version=4).metadata[METADATA_KEY]["seconds"])
    except Exception:  # noqa: BLE001
        return None


_GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`[^`]*`")


def stage_unexecuted(src: Path, dst: Path, reason: str) -> None:
    """Copy a source notebook to ``dst`` unexecuted, with a note at the top saying why it has no outputs."""
    nb = nbformat.read(src, as_version=4)
    note = nbformat.v4.new_markdown_cell(
        ":::{note}\n"
        f"This chapter was not executed in this build ({reason}), so it shows code without outputs. "
        "`make book` executes every chapter.\n"
        ":::"
    )
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            # glued numbers come from outputs this copy does not have; an unresolved key would fail the -W build
            cell.source = _GLUE_ROLE.sub("*(computed when executed)*", cell.source)
    nb.cells.insert(0, note)
    nb.metadata[METADATA_KEY] = {"status": "not executed", "reason": reason, "source_sha256": _sha256(src)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)


# ---------------------------------------------------------------------------------------------------------------------
# Staging and rendering


def _copy_assets(src_dir: Path, dst_dir: Path) -> None:
    """Copy the non-notebook files under a notebook folder (images, small tables the notebook reads or shows) to
    ``dst_dir``, skipping hidden files and folders, ``_build`` folders and anything already inside ``dst_dir``."""
    src_dir, dst_dir = src_dir.resolve(), dst_dir.resolve()
    for path in sorted(src_dir.rglob("*")):
        rel = path.relative_to(src_dir)
        if path.is_dir() or path.suffix == ".ipynb" or dst_dir in path.parents:
            continue
        if any(part.startswith(".") or part == "_build" for part in rel.parts):
            continue
        target = dst_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def stage_book(root: str | Path, build_dir: str | Path) -> None:
    """Copy the book sources (``_config.yml``, ``_toc.yml``, ``book/`` and the notebooks' non-notebook files) into
    ``build_dir``, next to the executed notebooks. The staged ``book/`` is replaced, so removed pages go away."""
    root, build_dir = Path(root), Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, TOC_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: file not found; the book needs it")
        shutil.copy2(root / name, build_dir / name)
    if not (root / BOOK_DIR).is_dir():
        raise FileNotFoundError(f"{root / BOOK_DIR}: folder not found; the book's pages live there")
    shutil.rmtree(build_dir / BOOK_DIR, ignore_errors=True)
    shutil.copytree(root / BOOK_DIR, build_dir / BOOK_DIR, ignore=shutil.ignore_patterns(".*"))
    for folder in sorted({nb.parent for nb in book_notebooks(root, must_exist=False)}):
        if folder.is_dir() and folder.resolve() != root.resolve():  # never copy the whole checkout
            _copy_assets(folder, build_dir / folder.relative_to(root))


def _jupyter_book_executable() -> str:
    candidate = Path(sys.executable).with_name("jupyter-book")
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("jupyter-book")
    if found is None:
        raise BookBuildError("jupyter-book is not installed in this environment; run `make setup`")
    return found


def build_html(build_dir: str | Path, *, root: str | Path | None = None) -> Path:
    """Render the staged book in ``build_dir`` with ``jupyter-book build -W --keep-going --all``.

    Every page is rebuilt (``--all``), so warnings from unchanged pages are reported too. Returns the path of
    ``_build/html/index.html``; raises ``BookBuildError`` when the build fails.
    """
    build_dir = Path(build_dir)
    root = Path(root) if root is not None else project_root()
    if not (build_dir / CONFIG_FILE).is_file():
        raise BookBuildError(f"{build_dir}: no {CONFIG_FILE}; stage the book first (stage_book)")
    env = dict(os.environ, POSELIB_ROOT=str(root.resolve()))
    command = [_jupyter_book_executable(), "build", "-W", "--keep-going", "--all", str(build_dir)]
    result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, check=False)
    index = build_dir / "_build" / "html" / "index.html"
    if result.returncode != 0:
        raise BookBuildError(
            f"jupyter-book build failed (exit {result.returncode}) for {build_dir}; the warnings above name the "
            "pages (-W turns every warning into an error)"
        )
    if not index.is_file():
        raise BookBuildError(f"jupyter-book build finished but {index} does not exist")
    return index


# ---------------------------------------------------------------------------------------------------------------------
# The whole book


def format_timings(rows: list[NotebookRun]) -> str:
    """The timing table printed at the end of a run: one line per notebook and the total."""
    width = max([len(r.notebook) for r in rows] + [len("notebook")])
    lines = [f"{'notebook':<{width}}  {'status':<13} {'seconds':>9}", "-" * (width + 25)]
    total = 0.0
    for r in rows:
        secs = "-" if r.seconds is None else f"{r.seconds:9.1f}"
        total += r.seconds or 0.0
        lines.append(f"{r.notebook:<{width}}  {r.status:<13} {secs:>9}")
    lines.append("-" * (width + 25))
    lines.append(f"{'total':<{width}}  {'':<13} {total:9.1f}")
    return "\n".join(lines)


def run_book(
    preset: str,
    only: str | None = None,
    execute: bool = True,
    *,
    timeout: float | None = None,
    root: str | Path | None = None,
) -> int:
    """Execute the book's notebooks under ``preset`` and render the book; return a process exit code.

    - ``execute=True``: every notebook (or those whose path relative to the checkout matches the glob ``only``)
      is executed into ``_build/<preset>/``. With ``only``, each other notebook keeps its earlier executed copy when
      one exists for the same source and preset; otherwise it is staged unexecuted, with a note saying so, so the
      book still renders (code without outputs).
    - ``execute=False``: nothing is executed; every notebook must already have an executed copy (from an earlier
      run or from the notebook tests), else the run fails naming the missing ones.

    Prints progress, a timing table and the path of the rendered ``index.html``. Returns 0 on success, 1 when a
    notebook, the table of contents or the build failed, 2 on a usage error (unknown preset, bad ``only``).
    """
    root = Path(root) if root is not None else project_root()
    try:
        check_preset(preset)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        notebooks = book_notebooks(root)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if only is not None and not execute:
        print("error: --only selects notebooks to execute; it cannot be combined with --no-execute", file=sys.stderr)
        return 2
    build_dir = build_dir_for(preset, root)
    names = [_display(nb, root) for nb in notebooks]
    selected = [n for n in names if only is None or fnmatch.fnmatch(n, only)] if execute else []
    if execute and not selected:
        print(f"error: --only {only!r} matches none of the book's notebooks:\n  " + "\n  ".join(names), file=sys.stderr)
        return 2

    rows: list[NotebookRun] = []
    if execute:
        print(f"executing {len(selected)} notebook(s) with PRESET={preset!r} into {_display(build_dir, root)}/", flush=True)
        for i, name in enumerate(selected, 1):
            print(f"[{i}/{len(selected)}] {name} ...", flush=True)
            try:
                seconds = execute_notebook(
                    root / name, build_dir / name, preset, timeout=timeout, root=root, progress=sys.stdout.isatty()
                )
            except NotebookExecutionError as err:
                rows.append(NotebookRun(name, "failed", None))
                print(f"[{i}/{len(selected)}] {name} FAILED", flush=True)
                print(format_timings(rows))
                print(f"\nerror: {err}", file=sys.stderr)
                return 1
            rows.append(NotebookRun(name, "executed", seconds))
            print(f"[{i}/{len(selected)}] {name} done in {seconds:.1f} s", flush=True)
        for name in names:
            if name in selected:
                continue
            state = executed_status(root / name, build_dir / name, preset)
            if state == "ok":
                rows.append(NotebookRun(name, "reused", _recorded_seconds(build_dir / name)))
            else:
                stage_unexecuted(root / name, build_dir / name, f"not selected by --only {only!r}")
                rows.append(NotebookRun(name, "not executed", None))
        order = {n: i for i, n in enumerate(names)}
        rows.sort(key=lambda r: order[r.notebook])
    else:
        problems = []
        for name in names:
            state = executed_status(root / name, build_dir / name, preset)
            if state in ("ok", "stale"):
                if state == "stale":
                    print(f"warning: {name} changed since it was executed; rendering the older executed copy")
                rows.append(NotebookRun(name, "recorded", _recorded_seconds(build_dir / name)))
            else:
                problems.append(f"{_display(build_dir / name, root)}: {state}")
        if problems:
            print(
                f"error: --no-execute needs every notebook executed with --preset {preset}, but:\n  "
                + "\n  ".join(problems)
                + f"\nexecute them with `poselib book --preset {preset}` (or `pytest -m notebook` for smoke)",
                file=sys.stderr,
            )
            return 1

    print(f"staging the book in {_display(build_dir, root)}/ and rendering it", flush=True)
    start = time.perf_counter()
    try:
        stage_book(root, build_dir)
        index = build_html(build_dir, root=root)
    except (BookBuildError, FileNotFoundError, ValueError) as err:
        print(format_timings(rows))
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    build_seconds = time.perf_counter() - start
    print()
    print(format_timings(rows))
    print(f"\nrendered in {build_seconds:.1f} s")
    print(f"book: {index}")
    return 0
