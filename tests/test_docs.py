"""The documentation site: built with warnings as errors, served on localhost, looked at in Chromium.

One build per test module (``sphinx -W --keep-going -E``: the documented command, into a
temporary directory, with a fresh environment so that every page is read again and no
warning hides in a cache), then:

* the API page documents every public object of :mod:`snntorch_clif`;
* headless Chromium loads the home page, the API page and a tutorial page from a local
  HTTP server and the rendered DOM has the page's title, code blocks, plot images and
  typeset math;
* every same-origin link and asset on those pages answers HTTP 200 (and in-page anchors
  exist), and every local link of every built page points at a file that exists.

Set ``SNNTORCH_CLIF_DOCS_SCREENSHOTS=<dir>`` to keep the browser's screenshots.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import inspect
import json
import os
import pkgutil
import shutil
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

import snntorch_clif

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
PAGES = {  # page -> (words its <title> and <h1> contain, has plot images, has math)
    "index.html": ("snntorch-clif", False, False),
    "api.html": ("API reference", False, True),
    "tutorials/01_clif_neuron.html": ("The CLIF neuron", True, True),
}


# --- helpers --------------------------------------------------------------------------
class _Page(HTMLParser):
    """Collects what the tests look at in an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.h1 = ""
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.pre_blocks = 0
        self.math_typeset = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "pre":
            self.pre_blocks += 1
        if tag == "mjx-container":
            self.math_typeset += 1
        if tag in ("title", "h1"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.title += data
        elif "h1" in self._in:
            self.h1 += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, b"", ""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--virtual-time-budget=15000", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


# --- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented build command, into a fresh directory (safe under pytest-xdist)."""
    out = tmp_path_factory.mktemp("docs")
    html, doctrees = out / "html", out / "doctrees"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
           "-d", str(doctrees), str(DOCS), str(html)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the docs build failed (warnings are errors):\n{proc.stderr[-6000:]}"
    return html


@pytest.fixture(scope="module")
def server(site: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def rendered(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    """page -> (the DOM Chromium rendered, its screenshot as PNG bytes)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make test installs it): browser checks skipped")
    keep = os.environ.get("SNNTORCH_CLIF_DOCS_SCREENSHOTS")
    out: dict[str, tuple[str, bytes]] = {}
    for page in PAGES:
        work = tmp_path_factory.mktemp("chromium")
        url = server + page
        dom = chromium("--dump-dom", url, profile=work / "profile-dom")
        assert dom.returncode == 0 and "<html" in dom.stdout, f"chromium could not load {url}: {dom.stderr[-2000:]}"
        shot = work / "page.png"
        snap = chromium("--window-size=1280,1600", f"--screenshot={shot}", url, profile=work / "profile-shot")
        assert snap.returncode == 0 and shot.exists(), f"no screenshot of {url}: {snap.stderr[-2000:]}"
        out[page] = (dom.stdout, shot.read_bytes())
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / (page.replace("/", "_").replace(".html", ".png")))
    return out


# --- the build ------------------------------------------------------------------------
def test_every_page_is_built(site: Path) -> None:
    for page in ("index.html", "installation.html", "model.html", "tutorials.html", "api.html",
                 "benchmarks.html", "reproduction.html", "changelog.html"):
        assert (site / page).is_file(), page
    notebooks = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks, "no tutorials found"
    for stem in notebooks:
        assert (site / "tutorials" / f"{stem}.html").is_file(), f"tutorial {stem} is not on the site"
    assert "tutorials/" + notebooks[0] in (site / "tutorials.html").read_text()


def test_model_page_has_equations_citation_and_figure(site: Path) -> None:
    html = (site / "model.html").read_text()
    for needle in ("19949", "2402.04663", "ICML 2024", r"\sigma", r"\theta"):
        assert needle in html, needle
    page = parse(html)
    figures = [src for src in page.images if "plot_directive" in src or src.endswith(".png")]
    assert figures, "the model page has no figure"
    assert (site / urljoin("model.html", figures[0])).is_file()


def test_api_page_documents_every_public_object(site: Path) -> None:
    ids = parse((site / "api.html").read_text()).ids
    missing = [f"snntorch_clif.{n}" for n in snntorch_clif.__all__
               if not inspect.ismodule(getattr(snntorch_clif, n)) and f"snntorch_clif.{n}" not in ids]
    exported = [getattr(snntorch_clif, n) for n in snntorch_clif.__all__]
    for info in pkgutil.iter_modules(snntorch_clif.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"snntorch_clif.{info.name}")
        if f"module-snntorch_clif.{info.name}" not in ids:
            missing.append(f"module snntorch_clif.{info.name}")
        names = getattr(module, "__all__", None)
        if names is None:
            names = [k for k, v in vars(module).items() if not k.startswith("_")
                     and (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == module.__name__]
        for name in names:
            if any(getattr(module, name) is obj for obj in exported):
                continue  # documented under its top-level name
            if f"snntorch_clif.{info.name}.{name}" not in ids:
                missing.append(f"snntorch_clif.{info.name}.{name}")
    assert not missing, f"not on the API page: {missing}"


def test_benchmarks_page_shows_results_or_says_where_they_come_from(site: Path) -> None:
    html = (site / "benchmarks.html").read_text()
    results = list((ROOT / "benchmarks").glob("results/*.json")) + list((ROOT / "benchmarks").glob("*.json"))
    if results:
        assert "<table" in html and "x fused" in html
    else:
        assert "No benchmark results are committed yet" in html and "bench_neuron.py" in html


def test_benchmarks_page_shows_the_cuda_kernels_resources(site: Path) -> None:
    # benchmarks/results/cuda_resources_sm_90.json, as its own table, not as a failed
    # bench_neuron.py result
    html = (site / "benchmarks.html").read_text()
    assert "cuda_resources_sm_90.json" in html and "LDL+STL" in html
    assert "cuda_resources_sm_90.json</span></code>: compiled for sm_90" in html
    assert "Not shown" not in html


def test_every_local_link_of_every_page_resolves(site: Path) -> None:
    broken = []
    for path in site.rglob("*.html"):
        if "_modules" in path.parts or "_sources" in path.parts:
            continue
        page = parse(path.read_text(errors="replace"))
        for link in page.links:
            parts = urlparse(link)
            target = parts.path
            if parts.scheme or parts.netloc or not target:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists():
                broken.append(f"{path.relative_to(site)} -> {link}")
    assert not broken, "broken local links:\n" + "\n".join(broken[:30])


# --- in the browser -------------------------------------------------------------------
@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_chromium(page: str, rendered: dict[str, tuple[str, bytes]], server: str) -> None:
    words, needs_plot, needs_math = PAGES[page]
    dom, screenshot = rendered[page]
    parsed = parse(dom)
    assert words in parsed.title, f"<title> is {parsed.title!r}"
    assert words in parsed.h1, f"<h1> is {parsed.h1!r}"
    assert parsed.pre_blocks >= 1, "no code block rendered"
    if needs_plot:
        plots = [src for src in parsed.images if src.endswith(".png")]
        assert len(plots) >= 2, f"expected the tutorial's plots, found images {parsed.images}"
        for src in plots:
            status, body, ctype = get(urljoin(server + page, src))
            assert status == 200 and ctype == "image/png", f"{src}: HTTP {status} {ctype}"
            width, height = png_size(body)
            assert width > 200 and height > 100, f"{src} is {width}x{height}"
    if needs_math:
        assert parsed.math_typeset >= 1, "MathJax (served from _static) did not typeset the page's math"
    width, height = png_size(screenshot)
    assert (width, height) == (1280, 1600)
    assert len(screenshot) > 20_000, "the screenshot is nearly blank"


@pytest.mark.parametrize("page", list(PAGES))
def test_same_origin_links_and_assets_answer_200(page: str, rendered: dict[str, tuple[str, bytes]], server: str) -> None:
    dom, _ = rendered[page]
    base = server + page
    origin = urlparse(server).netloc
    checked, broken = set(), []
    ids_of: dict[str, set[str]] = {}
    for link in parse(dom).links:
        absolute = urljoin(base, link)
        parts = urlparse(absolute)
        if parts.scheme not in ("http", "https") or parts.netloc != origin:
            continue
        target, fragment = urldefrag(absolute)
        if target not in checked:
            checked.add(target)
            status, body, ctype = get(target)
            if status != 200:
                broken.append(f"{link} -> HTTP {status}")
                continue
            if "text/html" in ctype:
                ids_of[target] = parse(body.decode("utf-8", "replace")).ids
        if fragment and target in ids_of and fragment not in ids_of[target]:
            broken.append(f"{link} -> no element with id {fragment!r}")
    assert len(checked) >= 10, f"suspiciously few local links on {page}: {sorted(checked)}"
    assert not broken, f"broken on {page}:\n" + "\n".join(broken)


# --- the examples on the pages run ----------------------------------------------------
def _python_blocks(rst: str) -> list[str]:
    """The bodies of the ``.. code-block:: python`` directives of a reST file."""
    blocks, lines = [], rst.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == ".. code-block:: python":
            body = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and not nxt.startswith("   "):
                    break
                body.append(nxt[3:])
            blocks.append("\n".join(body).strip("\n"))
    return blocks


def test_home_page_quickstart_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks((DOCS / "index.rst").read_text())
    assert len(blocks) == 1, "the home page has one quick-start block"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/index.rst", "exec"), namespace)
    assert tuple(namespace["spikes"].shape) == (8, 32, 10)
    assert tuple(namespace["spk"].shape) == (32, 128)
    assert float(namespace["net"][1].mem.abs().sum()) == 0.0, "reset(net) left a state behind"
    assert "cpu:" in capsys.readouterr().out, "backends() printed no report"


def test_benchmark_tables_are_rendered_from_result_files(tmp_path: Path) -> None:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        clif_docs = importlib.import_module("clif_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    good = tmp_path / "benchmarks" / "results" / "cpu.json"
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps({
        "device": "cpu", "device_name": "x86_64", "threads": 2, "dtype": "float32", "torch": "2.14.1",
        "copy_bandwidth_bytes_per_s": 1.5e10,
        "rows": [{"T": 16, "B": 32, "N": 4096, "neuron_steps": 2097152, "floor_ms": 4.5, "impl": {
            "fused": {"median_ms": 9.0, "neuron_steps_per_s": 2.33e8, "median_ratio_to_fused": 1.0},
            "reference": {"median_ms": 45.0, "neuron_steps_per_s": 4.66e7, "median_ratio_to_fused": 5.0},
        }}],
    }))
    bad = tmp_path / "benchmarks" / "results" / "other.json"
    bad.write_text("[1, 2]")
    (tmp_path / "benchmarks" / "results" / "cuda_resources_sm_90.json").write_text("{}")  # not this renderer's
    clif_docs.ROOT = tmp_path
    try:
        paths = clif_docs.result_files()
        text = "\n".join(clif_docs.benchmark_rst(paths))
    finally:
        clif_docs.ROOT = ROOT
    assert [p.name for p in paths] == ["cpu.json", "other.json"]
    assert "   * - 16x32x4096\n     - reference\n     - 45.000\n     - 46.6\n     - 5.00" in text
    assert "floor (32 B / neuron-step)" in text and "     - 0.50" in text  # floor / fused time
    assert "Not shown: this file is not a bench_neuron.py result" in text
    assert "No benchmark results" in "\n".join(clif_docs.benchmark_rst([]))
