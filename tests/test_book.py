"""The book runner (poselib.book) and the book's sources: fast unit tests.

Three tests start a Jupyter kernel on a throwaway notebook (a few seconds each); nothing imports torch in a kernel.
"""

from __future__ import annotations

import importlib
import io
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from poselib import book
from poselib.book import (
    METADATA_KEY,
    NotebookExecutionError,
    NotebookRun,
    book_notebooks,
    book_pages,
    execute_notebook,
    executed_status,
    format_timings,
    run_book,
    stage_book,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = 'PRESET = "cpu"\nDEVICE = "auto"\nSEED = 0'


def _notebook(path: Path, *sources: str) -> Path:
    """Write a notebook whose first code cell is the parameters cell, followed by ``sources``."""
    params = new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[params, *(new_code_cell(s) for s in sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


# ---------------------------------------------------------------------------------------------------------------------
# Executing notebooks (each test starts one kernel)


def test_failing_cell_is_named(tmp_path: Path) -> None:
    src = _notebook(tmp_path / "src" / "broken.ipynb", 'raise ValueError("boom from the second cell")\nprint("unreached")')
    dst = tmp_path / "out" / "broken.ipynb"
    with pytest.raises(NotebookExecutionError) as info:
        execute_notebook(src, dst, "smoke", root=tmp_path)
    err = info.value
    assert err.cell_index == 1  # the second cell of the source notebook
    assert err.ename == "ValueError" and "boom from the second cell" in err.evalue
    message = str(err)
    assert "broken.ipynb" in message and "cell 2 of 2" in message
    assert 'raise ValueError("boom from the second cell")' in message  # the failing cell's source is quoted
    assert "ValueError: boom from the second cell" in message
    # the partly executed notebook is kept, marked failed, with the injected cell hidden
    assert dst.is_file() and str(dst.relative_to(tmp_path)) in message
    kept = nbformat.read(dst, as_version=4)
    assert kept.metadata[METADATA_KEY]["status"] == "failed"
    assert executed_status(src, dst) == "failed"
    injected = [c for c in kept.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"]


def test_parameters_environment_and_hidden_injected_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "agg")  # as CI machines often have; kernels must not inherit it
    monkeypatch.setenv("POSELIB_PRESET", "cpu")
    src = _notebook(
        tmp_path / "nb" / "ok.ipynb",
        "import numpy as np\nfrom myst_nb import glue\nglue('half', np.float64(0.5), display=False)",
        "import os\n"
        "print('PRESET', PRESET, 'DEVICE', DEVICE, 'SEED', SEED)\n"
        "print('ROOT', os.environ['POSELIB_ROOT'])\n"
        "print('ENV_PRESET', os.environ['POSELIB_PRESET'])\n"
        "print('MPLBACKEND', os.environ.get('MPLBACKEND'))\n"
        "print('CWD', os.getcwd())",
    )
    dst = tmp_path / "build" / "nb" / "ok.ipynb"
    seconds = execute_notebook(src, dst, "smoke", root=tmp_path)
    assert seconds > 0

    nb = nbformat.read(dst, as_version=4)
    assert [c.metadata.get("tags", []) for c in nb.cells[:2]] == [["parameters"], ["injected-parameters", "hide-input"]]
    out = _stream_text(nb.cells[-1])
    assert "PRESET smoke DEVICE auto SEED 0" in out  # SEED keeps the notebook's default
    assert f"ROOT {tmp_path.resolve()}" in out
    assert "ENV_PRESET smoke" in out
    assert "MPLBACKEND agg" not in out
    assert f"CWD {dst.parent.resolve()}" in out  # the kernel runs next to the executed copy
    glued = [o for o in nb.cells[2].outputs if o.get("metadata", {}).get("scrapbook", {}).get("name") == "half"]
    assert [o.data["application/papermill.record/text/plain"] for o in glued] == ["0.5"]  # not np.float64(0.5)
    record = nb.metadata[METADATA_KEY]
    assert record["status"] == "ok" and record["preset"] == "smoke" and record["seconds"] == pytest.approx(seconds, abs=1e-3)
    # the runner's environment changes are undone
    import os

    assert os.environ["MPLBACKEND"] == "agg" and os.environ["POSELIB_PRESET"] == "cpu"
    # the source stays without outputs
    assert all(not c.get("outputs") for c in nbformat.read(src, as_version=4).cells if c.cell_type == "code")


def test_cell_timeout_is_named(tmp_path: Path) -> None:
    src = _notebook(tmp_path / "slow.ipynb", "x = 1", "import time\ntime.sleep(60)")
    dst = tmp_path / "out" / "slow.ipynb"
    with pytest.raises(NotebookExecutionError) as info:
        execute_notebook(src, dst, "smoke", timeout=2, root=tmp_path)
    assert info.value.cell_index == 2
    assert info.value.ename == "CellTimeoutError"
    assert "cell 3 of 3" in str(info.value) and "time.sleep(60)" in str(info.value)


def test_execute_refuses_unknown_preset_and_missing_notebook(tmp_path: Path) -> None:
    src = _notebook(tmp_path / "a.ipynb", "pass")
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        execute_notebook(src, tmp_path / "b.ipynb", "fast")
    with pytest.raises(FileNotFoundError, match="missing.ipynb"):
        execute_notebook(tmp_path / "missing.ipynb", tmp_path / "b.ipynb", "smoke")
    with pytest.raises(ValueError, match="onto itself"):
        execute_notebook(src, src, "smoke")


# ---------------------------------------------------------------------------------------------------------------------
# Table of contents, staging, the runner's bookkeeping


TOC = """
format: jb-book
root: book/intro
parts:
  - caption: A
    chapters:
      - file: notebooks/b/02_second.ipynb
      - file: book/page
        sections:
          - file: notebooks/a/01_first
  - caption: B
    chapters:
      - file: notebooks/a/03_third.ipynb
      - url: https://example.invalid
        title: external
"""


def _book(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "_toc.yml").write_text(TOC)
    (root / "_config.yml").write_text("title: test\n")
    for page in ("book/intro.md", "book/page.md"):
        (root / page).parent.mkdir(parents=True, exist_ok=True)
        (root / page).write_text("# Page\n")
    for nb in ("notebooks/b/02_second.ipynb", "notebooks/a/01_first.ipynb", "notebooks/a/03_third.ipynb"):
        _notebook(root / nb, "pass")
    return root


def test_book_notebooks_follow_toc_order(tmp_path: Path) -> None:
    root = _book(tmp_path)
    found = [p.relative_to(root).as_posix() for p in book_notebooks(root)]
    assert found == ["notebooks/b/02_second.ipynb", "notebooks/a/01_first.ipynb", "notebooks/a/03_third.ipynb"]
    assert book_pages(root) == [
        "book/intro",
        "notebooks/b/02_second",
        "book/page",
        "notebooks/a/01_first",
        "notebooks/a/03_third",
    ]


def test_book_notebooks_names_missing_entry(tmp_path: Path) -> None:
    root = _book(tmp_path)
    (root / "notebooks/a/03_third.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match=r"_toc\.yml.*notebooks/a/03_third\.ipynb"):
        book_notebooks(root)
    assert len(book_notebooks(root, must_exist=False)) == 3


def test_repo_toc_order() -> None:
    names = [p.relative_to(REPO_ROOT).as_posix() for p in book_notebooks(REPO_ROOT, must_exist=False)]
    part0 = [
        "notebooks/part0/01_task_and_metrics.ipynb",
        "notebooks/part0/02_synthpose.ipynb",
        "notebooks/part0/03_heatmaps_and_decoders.ipynb",
        "notebooks/part0/04_first_model.ipynb",
    ]
    assert names[: len(part0)] == part0
    assert names[-1] == "notebooks/appendix/environment.ipynb"
    pages = book_pages(REPO_ROOT)
    assert pages[0] == "book/intro" and pages[-1] == "book/bibliography"
    prose = [p for p in pages if p.startswith("book/")]
    assert [p for p in prose if not (REPO_ROOT / f"{p}.md").is_file()] == []


def test_stage_book_copies_sources_and_drops_removed_pages(tmp_path: Path) -> None:
    root = _book(tmp_path / "repo")
    (root / "notebooks/a/figure.svg").write_text("<svg/>")
    (root / "notebooks/a/.ipynb_checkpoints").mkdir()
    (root / "notebooks/a/.ipynb_checkpoints/x.txt").write_text("junk")
    build = tmp_path / "build"
    (build / "book").mkdir(parents=True)
    (build / "book/removed.md").write_text("# old page\n")
    stage_book(root, build)
    assert (build / "_config.yml").read_text() == "title: test\n"
    assert (build / "_toc.yml").read_text() == TOC
    assert (build / "book/intro.md").is_file() and not (build / "book/removed.md").exists()
    assert (build / "notebooks/a/figure.svg").is_file()
    assert not (build / "notebooks/a/.ipynb_checkpoints").exists()
    assert not (build / "notebooks/a/01_first.ipynb").exists()  # notebooks come from execution, not from sources


def _fake_executed(src: Path, dst: Path, preset: str, seconds: float) -> None:
    nb = nbformat.read(src, as_version=4)
    nb.metadata[METADATA_KEY] = {
        "status": "ok",
        "preset": preset,
        "seconds": seconds,
        "source_sha256": book._sha256(src),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)


def test_executed_status(tmp_path: Path) -> None:
    src = _notebook(tmp_path / "a.ipynb", "pass")
    dst = tmp_path / "build" / "a.ipynb"
    assert executed_status(src, dst, "smoke") == "missing"
    _fake_executed(src, dst, "smoke", 1.0)
    assert executed_status(src, dst, "smoke") == "ok"
    assert executed_status(src, dst, "cpu") == "wrong preset"
    _notebook(src, "pass", "print('changed')")
    assert executed_status(src, dst, "smoke") == "stale"
    book.stage_unexecuted(src, dst, "testing")
    assert executed_status(src, dst, "smoke") == "not executed"
    staged = nbformat.read(dst, as_version=4)
    assert staged.cells[0].cell_type == "markdown" and "not executed" in staged.cells[0].source


def test_run_book_no_execute_names_missing_notebooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _book(tmp_path)
    build = root / "_build" / "smoke"
    _fake_executed(root / "notebooks/b/02_second.ipynb", build / "notebooks/b/02_second.ipynb", "smoke", 2.0)
    assert run_book("smoke", execute=False, root=root) == 1
    err = capsys.readouterr().err
    assert "notebooks/a/01_first.ipynb: missing" in err and "notebooks/a/03_third.ipynb: missing" in err
    assert "02_second" not in err


def test_run_book_only_executes_matches_and_keeps_or_stages_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _book(tmp_path)
    build = root / "_build" / "smoke"
    executed: list[str] = []

    def fake_execute(src: Path, dst: Path, preset: str, **kwargs: object) -> float:
        executed.append(Path(src).relative_to(root).as_posix())
        _fake_executed(Path(src), Path(dst), preset, 3.0)
        return 3.0

    built: list[Path] = []
    monkeypatch.setattr(book, "execute_notebook", fake_execute)
    monkeypatch.setattr(book, "build_html", lambda d, root=None: built.append(Path(d)) or Path(d) / "index.html")
    # an earlier executed copy of 02_second (same source, same preset) is kept; 03_third has none
    _fake_executed(root / "notebooks/b/02_second.ipynb", build / "notebooks/b/02_second.ipynb", "smoke", 7.0)

    assert run_book("smoke", only="notebooks/a/01*", root=root) == 0
    assert executed == ["notebooks/a/01_first.ipynb"]
    assert built == [build]
    assert executed_status(root / "notebooks/b/02_second.ipynb", build / "notebooks/b/02_second.ipynb") == "ok"
    assert executed_status(root / "notebooks/a/03_third.ipynb", build / "notebooks/a/03_third.ipynb") == "not executed"
    out = capsys.readouterr().out
    table = out[out.index("notebook "):]
    rows = [line.split()[:2] for line in table.splitlines()[2:5]]
    assert rows == [["notebooks/b/02_second.ipynb", "reused"], ["notebooks/a/01_first.ipynb", "executed"],
                    ["notebooks/a/03_third.ipynb", "not"]]  # book order, whatever ran
    assert "book: " in out and str(build / "index.html") in out


def test_run_book_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _book(tmp_path)
    assert run_book("smoke", only="notebooks/zzz/*", root=root) == 2
    assert "matches none" in capsys.readouterr().err
    assert run_book("smoke", only="notebooks/a/*", execute=False, root=root) == 2
    assert run_book("fast", root=root) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_format_timings_totals_the_rows() -> None:
    table = format_timings([NotebookRun("a.ipynb", "executed", 1.25), NotebookRun("b.ipynb", "reused", 2.5),
                            NotebookRun("c.ipynb", "not executed", None)])
    lines = table.splitlines()
    assert lines[-1].split()[-1] == "3.8"  # 1.25 + 2.5, rounded to 0.1 s
    assert any(line.startswith("c.ipynb") and line.rstrip().endswith("-") for line in lines)


def test_command_line_wiring() -> None:
    from poselib.cli import build_parser

    parser, module = build_parser(["book", "--preset", "smoke", "--no-execute"])
    args = parser.parse_args(["book", "--preset", "smoke", "--no-execute", "--only", "x*", "--timeout", "5"])
    assert module is not None and module.__name__ == "poselib.commands.book"
    assert (args.preset, args.no_execute, args.only, args.timeout) == ("smoke", True, "x*", 5.0)


# ---------------------------------------------------------------------------------------------------------------------
# The book's sources


def _api_modules() -> list[str]:
    text = (REPO_ROOT / "book" / "api.md").read_text(encoding="utf-8")
    return re.findall(r"^\.\. automodule:: (\S+)", text, flags=re.MULTILINE)


def test_api_page_modules_import() -> None:
    """Every module on the API page imports (autodoc would otherwise fail the -W build far later)."""
    modules = _api_modules()
    assert modules, "book/api.md has no automodule directive"
    failures = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - report every module that fails, with its error
            failures.append(f"{name}: {type(err).__name__}: {err}")
    assert not failures, "book/api.md documents modules that do not import:\n  " + "\n  ".join(failures)


def test_api_page_lists_every_module() -> None:
    """Every public poselib module has an automodule entry on the API page."""
    import pkgutil

    import poselib

    modules = ["poselib"] + [
        m.name
        for m in pkgutil.walk_packages(poselib.__path__, "poselib.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    missing = sorted(set(modules) - set(_api_modules()))
    snippet = "\n".join(
        f"### `{m}`\n\n```{{eval-rst}}\n.. automodule:: {m}\n   :members:\n   :show-inheritance:\n"
        "   :ignore-module-all:\n```\n"
        for m in missing
    )
    assert not missing, f"book/api.md does not document {missing}; add under the right heading:\n\n{snippet}"


def _docstrings(module_name: str) -> list[tuple[str, str]]:
    """(qualified name, docstring) of a module and of the members autodoc documents (defined in it, public)."""
    import inspect

    module = importlib.import_module(module_name)
    found = [(module_name, inspect.getdoc(module) or "")]
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            found.append((f"{module_name}.{name}", inspect.getdoc(obj) or ""))
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                member = getattr(member, "__func__", member)
                if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                    found.append((f"{module_name}.{name}.{attr}", inspect.getdoc(member) or ""))
    return found


def test_api_docstrings_render_without_warnings() -> None:
    """Docstrings on the API page parse as reStructuredText (after napoleon) without docutils warnings, which the
    -W build would turn into errors. Sphinx roles and directives are stood in for by generic ones."""
    from docutils import nodes
    from docutils.core import publish_doctree
    from docutils.parsers.rst import Directive, directives, roles
    from sphinx.ext.napoleon import Config, GoogleDocstring, NumpyDocstring

    class AnyDirective(Directive):
        has_content = True
        optional_arguments = 10
        final_argument_whitespace = True
        option_spec = None

        def run(self) -> list:
            return []

    for role in ("mod", "func", "class", "meth", "attr", "data", "obj", "exc", "ref", "doc", "term", "cite", "any",
                 "py:mod", "py:func", "py:class", "py:meth", "py:attr", "py:data", "py:obj", "py:exc", "samp",
                 "file", "command", "program", "option", "envvar", "kbd", "abbr", "numref"):
        roles.register_generic_role(role, nodes.literal)
    for name in ("code-block", "sourcecode", "seealso", "versionadded", "versionchanged", "deprecated", "autolink",
                 "plot", "doctest", "testcode", "glossary", "todo", "attribute", "method", "function", "class", "data",
                 "exception", "module", "currentmodule", "index", "only", "py:attribute", "py:method", "py:function",
                 "py:class", "py:data"):
        directives.register_directive(name, AnyDirective)

    config = Config(napoleon_use_param=True, napoleon_use_rtype=False)
    problems = []
    for module_name in _api_modules():
        for qualname, doc in _docstrings(module_name):
            if not doc:
                continue
            text = str(GoogleDocstring(str(NumpyDocstring(doc, config)), config))
            stream = io.StringIO()
            publish_doctree(text, settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5})
            if stream.getvalue().strip():
                messages = [m for m in stream.getvalue().strip().splitlines() if "(WARNING" in m or "(ERROR" in m]
                problems.append(f"{qualname}: " + "; ".join(messages or [stream.getvalue().strip()]))
    assert not problems, "docstrings that would break the -W book build:\n  " + "\n  ".join(problems)


def test_bibliography_keys_cited_exist() -> None:
    """Every citation in the pages and notebooks has an entry, and every entry is cited somewhere."""
    bib = (REPO_ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.MULTILINE))
    texts = [p.read_text(encoding="utf-8") for p in (REPO_ROOT / "book").glob("*.md")]
    for nb_path in book_notebooks(REPO_ROOT, must_exist=False):
        if nb_path.is_file():
            nb = nbformat.read(nb_path, as_version=4)
            texts.extend(c.source for c in nb.cells if c.cell_type == "markdown")
    cited = set()
    for text in texts:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no page cites anything"
    assert not cited - keys, f"cited but not in book/references.bib: {sorted(cited - keys)}"
    assert not keys - cited, f"in book/references.bib but cited nowhere: {sorted(keys - cited)}"


def test_config_keeps_hidden_folders_and_execution_off() -> None:
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "off"  # a YAML `off` would be False
    assert ".*" in config["exclude_patterns"]
    assert config["only_build_toc_files"] is True
    assert set(config["parse"]["myst_enable_extensions"]) >= {"colon_fence", "dollarmath", "amsmath", "linkify",
                                                               "substitution"}
    assert (REPO_ROOT / config["bibtex_bibfiles"][0]).is_file()


def test_unexecuted_copies_drop_glue_roles_so_the_build_stays_clean(tmp_path):
    import nbformat

    from poselib.book import stage_unexecuted

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("AP is {glue:text}`ap:.3f` and {glue}`n`.")])
    src, dst = tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb"
    nbformat.write(nb, src)
    stage_unexecuted(src, dst, "not selected")
    text = "".join(cell.source for cell in nbformat.read(dst, as_version=4).cells)
    assert "glue" not in text.split(":::")[-1] and "computed when executed" in text


def test_kernel_environment_silences_progress_bars_and_restores(tmp_path, monkeypatch):
    import os

    from poselib.book import kernel_environment

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("MPLBACKEND", "agg")
    with kernel_environment("smoke", tmp_path):
        assert os.environ["TQDM_DISABLE"] == "1" and os.environ["POSELIB_PRESET"] == "smoke"
        assert "MPLBACKEND" not in os.environ
    assert "TQDM_DISABLE" not in os.environ and os.environ["MPLBACKEND"] == "agg"
