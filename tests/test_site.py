"""The rendered smoke book, opened in headless chromium (marker ``site``).

Runs after ``poselib book --preset smoke --no-execute`` (``make test``). For the index and every page of
``_toc.yml`` it fails on: a page that was not built, a broken image, a Python traceback or error output, and a
notebook chapter without any figure. ``POSEBOOK_BUILD_DIR`` points the tests at another build folder (default
``_build/smoke``). Without chromium the tests are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poselib.book import book_notebooks, book_pages

pytestmark = pytest.mark.site

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = Path(os.environ.get("POSEBOOK_BUILD_DIR") or REPO_ROOT / "_build" / "smoke")
HTML_ROOT = BUILD_DIR / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGES = book_pages(REPO_ROOT)
NOTEBOOK_PAGES = {p.relative_to(REPO_ROOT).with_suffix("").as_posix() for p in book_notebooks(REPO_ROOT, must_exist=False)}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
BROKEN_IMAGES_JS = """
return Array.from(document.images)
    .filter(img => img.complete && img.naturalWidth === 0)
    .map(img => img.getAttribute('src'));
"""
PENDING_IMAGES_JS = "return Array.from(document.images).filter(img => !img.complete).length;"
CONTENT_IMAGES_JS = """
const main = document.querySelector('article') || document.querySelector('main') || document.body;
return main.querySelectorAll('img').length;
"""
ERROR_OUTPUTS_JS = """
return document.querySelectorAll('.output.traceback, .output.error, div.cell_output .traceback').length;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a selenium WebDriver
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        message = f"{CHROMIUM} or {CHROMEDRIVER} missing: install Debian's chromium and chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (required in CI)", pytrace=False)
        pytest.skip(message)
    if not (HTML_ROOT / "index.html").is_file():
        pytest.fail(
            f"{HTML_ROOT / 'index.html'} does not exist: render the book first "
            "(`poselib book --preset smoke --no-execute` after the notebook tests)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path means selenium-manager is never asked to find (or download) anything.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, path: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(path.as_uri())
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    wait.until(lambda d: d.execute_script(PENDING_IMAGES_JS) == 0)


def _page_problems(browser, page: str) -> list[str]:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    problems = []
    broken = browser.execute_script(BROKEN_IMAGES_JS)
    if broken:
        problems.append(f"broken images: {broken}")
    text = browser.find_element(By.TAG_NAME, "body").text
    if "Traceback (most recent call last)" in text:
        problems.append("shows a Python traceback")
    if browser.execute_script(ERROR_OUTPUTS_JS):
        problems.append("has an error output cell")
    if not browser.find_elements(By.TAG_NAME, "h1"):
        problems.append("has no title (h1)")
    return problems


def test_index_links_every_page(browser) -> None:  # noqa: ANN001
    """The landing page opens cleanly and its navigation links to every page of the toc."""
    from selenium.webdriver.common.by import By

    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, HTML_ROOT / "index.html")
    # index.html may be a redirect to the root page: wait for the page that has the navigation
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "nav a.reference.internal"))
    _open(browser, Path(browser.current_url.removeprefix("file://").split("#")[0]))
    assert not _page_problems(browser, "index"), _page_problems(browser, "index")
    hrefs = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav a.reference.internal")}
    linked = {Path(h.split("#")[0].removeprefix("file://")).resolve() for h in hrefs if h and h.startswith("file://")}
    expected = {(HTML_ROOT / f"{page}.html").resolve() for page in PAGES}
    missing = sorted(str(p.relative_to(HTML_ROOT.resolve())) for p in expected - linked)
    assert not missing, f"the navigation of index.html does not link to: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_page(browser, page: str) -> None:  # noqa: ANN001
    html = HTML_ROOT / f"{page}.html"
    assert html.is_file(), f"{page}: listed in _toc.yml but {html} was not built"
    _open(browser, html)
    problems = _page_problems(browser, page)
    if page in NOTEBOOK_PAGES and not browser.execute_script(CONTENT_IMAGES_JS):
        problems.append("is a notebook chapter without any figure")
    assert not problems, f"{html}:\n  " + "\n  ".join(problems)
