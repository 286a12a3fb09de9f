"""The documentation site: it builds strictly, its Python examples run, its links resolve,
every public name has a reference entry, and its pages render in a browser.

The site is built once per run (``mkdocs build --strict``, into a temporary folder shared by
the xdist workers). The browser tests open pages in headless Chromium through Playwright and
are skipped when no Chromium is installed. ``FNN_DOCS_SCREENSHOTS=docs/screenshots`` writes
the screenshots there instead of into a temporary folder (how the committed ones are made).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import html.parser
import http.server
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

import fnn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
KATEX = ROOT / "node_modules" / "katex" / "dist" / "katex.min.js"

# The public namespaces whose every name in __all__ must have an entry in the API reference.
PUBLIC_MODULES = (
    "fnn",
    "fnn.callbacks",
    "fnn.optimizers",
    "fnn.data",
    "fnn.datasets",
    "fnn.diagnostics",
    "fnn.protocol",
    "fnn.sklearn",
)

# A fenced block right after this comment is not run: <!-- skip: the reason -->
SKIP = re.compile(r"<!--\s*skip:\s*(?P<reason>[^>]+?)\s*-->\s*$")
FENCE = re.compile(r"^```python[^\n]*\n(?P<code>.*?)^```", re.M | re.S)


# ---------------------------------------------------------------------------- the build


def _shared_tmp(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run sees (the base temp folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install '.[docs]'")
    if not KATEX.is_file():
        pytest.skip(f"KaTeX is not installed ({KATEX.relative_to(ROOT)}): run `npm ci`")
    shared = _shared_tmp(tmp_path_factory)
    out = shared / "docs-site"
    with open(shared / "docs-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds, the others wait and reuse it
        if not (out / "index.html").is_file():
            build = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mkdocs",
                    "build",
                    "--strict",
                    "-f",
                    str(ROOT / "mkdocs.yml"),
                    "-d",
                    str(out),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            )
            if build.returncode != 0:
                shutil.rmtree(out, ignore_errors=True)
                pytest.fail(f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}")
    return out


def test_site_builds_strictly_with_every_page(site):
    pages = {p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for md in DOCS.rglob("*.md"):
        rel = md.relative_to(DOCS)
        if rel.parts[0] in ("figures", "hooks", "screenshots"):
            continue
        stem = rel.with_suffix("")
        expected = (
            "."
            if stem.as_posix() == "index"
            else (stem.parent.as_posix() if stem.name == "index" else stem.as_posix())
        )
        assert expected in pages, f"{rel} was not built"


# ------------------------------------------------------------------------- the reference


def _reference_ids(site: Path) -> set[str]:
    ids = set()
    for page in (site / "reference").rglob("index.html"):
        ids |= set(re.findall(r'id="(fnn[\w.]*)"', page.read_text()))
    return ids


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(site, module):
    ids = _reference_ids(site)
    names = importlib.import_module(module).__all__
    missing = [name for name in names if f"{module}.{name}" not in ids]
    assert not missing, f"{module}: no reference entry for {missing}; add it to docs/reference/"


def test_reference_prose_shows_no_rest_markup(site):
    """Docstrings render as Markdown: a reST literal-block marker ``::`` would show as text."""
    shown = [
        f"{page.relative_to(site)}: ...{m}"
        for page in (site / "reference").rglob("index.html")
        for m in re.findall(r".{0,60}::</p>", page.read_text())
    ]
    assert not shown, "end the paragraph with ':' before an indented example instead:\n" + "\n".join(shown)


def test_every_public_namespace_has_a_reference_page():
    directives = set()
    for page in (DOCS / "reference").glob("*.md"):
        directives |= set(re.findall(r"^::: (fnn[\w.]*)\s*$", page.read_text(), re.M))
    namespaces = {
        f"fnn.{name}"
        for name, value in vars(fnn).items()
        if type(value).__name__ == "module"
        and not name.startswith("_")
        and value.__doc__
        and "public namespace" in value.__doc__
    }
    assert namespaces <= set(PUBLIC_MODULES), namespaces - set(PUBLIC_MODULES)
    assert set(PUBLIC_MODULES) <= directives, set(PUBLIC_MODULES) - directives


# ------------------------------------------------------------------------------- links


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.links.append((tag, attrs[key]))


@functools.cache
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(errors="replace"))
    return parser


def test_no_broken_internal_link_or_anchor(site):
    broken, external = [], set()
    for page in sorted(site.rglob("*.html")):
        base = "/" + page.relative_to(site).as_posix()
        for _tag, link in _parse(page).links:
            parts = urlsplit(link)
            if parts.scheme in ("http", "https"):
                external.add(link)  # collected, not fetched: the machine is offline
                continue
            if parts.scheme or link.startswith("//"):
                continue  # mailto:, data:, javascript:
            target = urlsplit(urljoin(base, link))
            path = site / unquote(target.path).lstrip("/")
            if path.is_dir() or target.path.endswith("/"):
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{base}: {link} (no file)")
            elif (
                target.fragment
                and path.suffix == ".html"
                and unquote(target.fragment) not in _parse(path).ids
            ):
                broken.append(f"{base}: {link} (no anchor)")
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------------------- examples


def _blocks(page: Path) -> list[tuple[int, str | None, str]]:
    """(line, skip reason or None, code) of each ```python block of ``page``."""
    text = page.read_text()
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        out.append((text.count("\n", 0, match.start()) + 1, skip and skip["reason"], match["code"]))
    return out


PAGES = sorted(p for p in DOCS.rglob("*.md") if "```python" in p.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_examples_run(page, tmp_path, monkeypatch):
    """Each page's Python blocks, in order, in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs.{page.stem}"}
    for line, skip, code in _blocks(page):
        if skip:
            continue
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        except Exception as error:  # name the block, then re-raise
            raise AssertionError(f"the block at {page.relative_to(ROOT)}:{line} failed") from error


def test_skipped_blocks_are_few_and_say_why():
    skipped = [(page, reason) for page in PAGES for _, reason, _ in _blocks(page) if reason]
    assert len(skipped) <= 3, skipped


# ----------------------------------------------------------------------------- browser

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# name of the screenshot -> (page, what it must show)
SCREENSHOTS = {"home": "", "api_reference": "reference/fnn/", "math_and_figure": "guide/curvature/"}


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip(
            "no Chromium installed (chromium, chromium-browser or google-chrome); apt-get install chromium"
        )
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with _serve(site) as url, playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context, url
        finally:
            context.close()


def _open(browser, path: str):
    """The page at ``path`` once loaded, with the console errors, failed and foreign requests."""
    context, url = browser
    page = context.new_page()
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    def route(r):
        if r.request.url.startswith(url):
            r.continue_()
        else:  # the site must not reach any other host (no CDN, no web fonts)
            problems.append(f"request to another host: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.goto(url + path, wait_until="load")
    return page, problems


def _math_pages(site: Path) -> list[str]:
    return sorted(
        p.parent.relative_to(site).as_posix() + "/"
        for p in site.rglob("index.html")
        if 'class="arithmatex"' in p.read_text()
    )


def test_pages_render_with_math_figures_and_no_console_error(browser, site, tmp_path):
    folder = Path(os.environ.get("FNN_DOCS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in SCREENSHOTS.items():
        page, problems = _open(browser, path)
        assert page.locator("article h1").count() == 1, path
        images = page.evaluate(
            "[...document.querySelectorAll('article img')]"
            ".map(i => [i.src, i.complete && i.naturalWidth > 0])"
        )
        assert all(ok for _, ok in images), (path, images)
        if name == "api_reference":
            assert page.locator("[id='fnn.backprop']").count() == 1
        if name == "math_and_figure":
            assert images, "the curvature guide shows a figure"
            assert page.locator(".arithmatex .katex").count() >= 10
            page.locator("#curvature-by-hand-the-r-operator").scroll_into_view_if_needed()
            page.evaluate("document.getElementById('curvature-by-hand-the-r-operator').scrollIntoView()")
        page.screenshot(path=str(folder / f"{name}.png"))
        page.close()
        assert not problems, (path, problems)


def test_all_math_renders(browser, site):
    """Every formula of the site goes through KaTeX without an error (a bad one throws)."""
    pages = _math_pages(site)
    assert "guide/api/" in pages and "guide/curvature/" in pages
    for path in pages:
        page, problems = _open(browser, path)
        unrendered = page.evaluate(
            "[...document.querySelectorAll('.arithmatex')]"
            ".filter(e => !e.querySelector('.katex')).map(e => e.textContent)"
        )
        page.close()
        assert not problems and not unrendered, (path, problems, unrendered)
