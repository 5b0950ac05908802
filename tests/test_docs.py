"""The documentation site: built with warnings as errors, served on localhost, looked at in Chromium.

One build per test module (``sphinx -W --keep-going -E``: the documented command, into a
temporary directory, with a fresh environment so that every page is read again and no
warning hides in a cache), then:

* the API page documents every public object of :mod:`snntorch_clif`;
* headless Chromium loads the home page, the API page, a tutorial page and the benchmarks
  page from a local HTTP server and the rendered DOM has the page's title, code blocks, plot images and
  typeset math;
* every same-origin link and asset on those pages answers HTTP 200 (and in-page anchors
  exist), and every local link of every built page points at a file that exists;
* no page fetches a script, style sheet or image from another host (the site works offline);
* no page, and neither README, carries the project's development history (run and issue
  numbers, goals, "VM", instruction counts, commit talk): pages speak to users.

Set ``SNNTORCH_CLIF_DOCS_SCREENSHOTS=<dir>`` to keep the browser's screenshots.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import inspect
import json
import os
import re
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
    "benchmarks.html": ("Benchmarks", True, True),
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
                 "benchmarks.html", "reproduction.html", "changelog.html", "robustness.html", "testing.html"):
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


def _clif_docs():  # noqa: ANN202 - docs/_ext is not a package
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("clif_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_api_page_documents_the_public_api_and_no_internals(site: Path) -> None:
    clif_docs = _clif_docs()
    html = (site / "api.html").read_text()
    ids = parse(html).ids
    exported = [getattr(snntorch_clif, n) for n in snntorch_clif.__all__]
    missing = [f"snntorch_clif.{n}" for n in snntorch_clif.__all__
               if not inspect.ismodule(getattr(snntorch_clif, n)) and f"snntorch_clif.{n}" not in ids]
    public = clif_docs.public_modules(snntorch_clif)
    for short in public:
        module = importlib.import_module(f"snntorch_clif.{short}")
        if f"module-snntorch_clif.{short}" not in ids:
            missing.append(f"module snntorch_clif.{short}")
        for name in clif_docs.module_public_names(module):
            if any(getattr(module, name) is obj for obj in exported):
                continue  # documented under its top-level name
            if f"snntorch_clif.{short}.{name}" not in ids:
                missing.append(f"snntorch_clif.{short}.{name}")
    assert not missing, f"not on the API page: {missing}"
    # every submodule is either public or named internal: a new one needs a decision
    undecided = [m for m in clif_docs.submodules(snntorch_clif)
                 if m not in public and m not in clif_docs.INTERNAL_MODULES]
    assert not undecided, f"submodules neither public nor internal (docs/_ext/clif_docs.py): {undecided}"
    for short in clif_docs.INTERNAL_MODULES:
        assert f"module-snntorch_clif.{short}" not in ids, f"internal module {short} is on the API page"
        assert not any(i.startswith(f"snntorch_clif.{short}.") for i in ids), f"internals of {short} shown"
    for module, names in clif_docs.INTERNAL_NAMES.items():
        for name in names:
            assert f"snntorch_clif.{module}.{name}" not in ids, f"internal {module}.{name} is on the API page"
    for internal in ("RESET_IDS", "parse_args", "install_snntorch_backprop_support"):
        assert internal not in html, internal


def test_benchmarks_page_shows_dated_results_figures_and_the_gpu_status(site: Path) -> None:
    html = (site / "benchmarks.html").read_text()
    text = visible_text(html)
    page = parse(html)
    figures = [src for src in page.images if "plot_directive" in src or src.endswith(".png")]
    assert len(figures) >= 4, f"expected the page's four figures, found {figures}"
    for src in figures:
        assert (site / urljoin("benchmarks.html", src)).is_file(), src
    for name in ("cpu_sweep_1thread.json", "neuron_cpu_1thread.json", "open_neuromorphic_cpu.json"):
        result = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        assert f"Measured {result['date']}" in text, f"{name}'s date is not on the page"
    assert html.count("<table") >= 3
    assert "not been timed on a GPU yet" in text and "make gpu-check" in text


def test_command_line_options_keep_their_two_hyphens(site: Path) -> None:
    # Sphinx's smart quotes turn "--sizes" in running text into an en dash ("\u2013sizes")
    converted = []
    for path in sorted(site.rglob("*.html")):
        if {"_modules", "_sources", "_static"} & set(path.parts):
            continue
        converted += [f"{path.relative_to(site)}: {m.group(0)}"
                      for m in re.finditer(r"\u2013[a-z][\w-]*", visible_text(path.read_text()))]
    assert not converted, "options shown with an en dash:\n" + "\n".join(converted)


def test_testing_page_shows_the_cuda_kernels_resources(site: Path) -> None:
    # benchmarks/results/cuda_resources_sm_90.json, as its own table
    html = (site / "testing.html").read_text()
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


def test_gpu_tables_are_rendered_from_result_files(tmp_path: Path) -> None:
    clif_docs = _clif_docs()
    good = tmp_path / "benchmarks" / "results" / "gpu_h100_float32.json"
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps({
        "device": "cuda", "device_name": "NVIDIA H100", "dtype": "float32", "torch": "2.14.1", "date": "2027-01-02",
        "copy_bandwidth_bytes_per_s": 1.5e12,
        "rows": [{"T": 16, "B": 32, "N": 4096, "neuron_steps": 2097152, "floor_ms": 4.5, "impl": {
            "fused": {"median_ms": 9.0, "neuron_steps_per_s": 2.33e8, "median_ratio_to_fused": 1.0},
            "reference": {"median_ms": 45.0, "neuron_steps_per_s": 4.66e7, "median_ratio_to_fused": 5.0},
        }}],
    }))
    bad = tmp_path / "benchmarks" / "results" / "gpu_other.json"
    bad.write_text("[1, 2]")
    (tmp_path / "benchmarks" / "results" / "cpu_sweep_1thread.json").write_text("{}")  # not this renderer's
    clif_docs.ROOT = tmp_path
    try:
        paths = clif_docs.result_files()
        text = "\n".join(clif_docs.benchmark_rst(paths))
    finally:
        clif_docs.ROOT = ROOT
    assert [p.name for p in paths] == ["gpu_h100_float32.json", "gpu_other.json"]
    assert "   * - 16x32x4096\n     - reference\n     - 45.000\n     - 46.6\n     - 5.00" in text
    assert "date: 2027-01-02" in text
    assert "floor (32 B / neuron-step)" in text and "     - 0.50" in text  # floor / fused time
    assert "Not shown: this file is not a bench_gpu.py result" in text
    assert "not been timed on a GPU yet" in "\n".join(clif_docs.benchmark_rst([]))


def test_results_tables_become_list_tables() -> None:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        clif_benchmarks = importlib.import_module("clif_benchmarks")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    rst = clif_benchmarks.markdown_to_rst([
        "Measured today on `cpu`.", "", "| n | model | s |", "|---:|---|---:|", "| 512 | CLIF | 0.25 |",
        "| 1,024 | `snn.Leaky` | |", "\n`norse` was not run at larger n.",
    ])
    assert rst[:2] == ["Measured today on ``cpu``.", ""]
    table = "\n".join(rst)
    assert "   * - n\n     - model\n     - s\n   * - 512\n     - CLIF\n     - 0.25" in table
    assert "   * - 1,024\n     - ``snn.Leaky``\n     -" in table
    assert "---" not in table and "``norse`` was not run at larger n." in table


# --- what the pages say -----------------------------------------------------------------
# Development history that does not belong on pages users read: run and issue numbers,
# goals, the development machine, instruction counts, commit talk. Specific enough that
# ordinary words ("runs the reference", "3 runs", "follow the instructions") pass.
HISTORY = [
    r"\b(?:sweep )?runs \d+\s*(?:-|\u2013|to|and)\s*\d+\b",
    r"\b[Rr]un \d+\b(?! (?:seeds?|epochs?|times|threads?|steps?|repetitions?|processes|cases|tests?|calls?)\b)",
    r"\b(?:[Ii]ssue|PR|pull request) #?\d+\b",
    r"\b[Gg]oals? \d+\b",
    r"\bVMs?\b",
    r"\b[\d,]+ (?:fewer |more )?instructions\b",
    r"\binstructions? (?:a|per) call\b",
    r"\bcallgrind\b",
    r"\bthis session\b",
    r"\b(?:previous|last|earlier) commit\b",
    r"\b(?:commit|build) [0-9a-f]{7,40}\b",
    r"\bprevious default\b",
    r"\bbuild machine\b",
    r"\bfirst landing\b",
]
HISTORY_RE = re.compile("|".join(f"(?:{p})" for p in HISTORY))
PAGES_TO_SKIP = {"genindex.html", "search.html", "py-modindex.html"}


class _Text(HTMLParser):
    """The text a reader sees: no scripts, styles or tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    text = _Text()
    text.feed(html)
    return " ".join(" ".join(text.parts).split())


def history_hits(text: str) -> list[str]:
    """Each match of ``HISTORY`` with some context."""
    return [text[max(0, m.start() - 40):m.end() + 40] for m in HISTORY_RE.finditer(text)]


@pytest.mark.parametrize(("text", "flagged"), [
    ("six runs of the same kernels (runs 16-21 in the README)", True),
    ("runs 19-21, on a busier VM, are the upper ends", True),
    ("the package's entry (20,000 fewer instructions a call)", True),
    ("instructions per call", True),
    ("bench_gpu.py against the previous commit decides it", True),
    ("the trade of issue 12, goal 5", True),
    ("in run 20, the committed JSON", True),
    ("the previous default", True),
    ("it runs the reference; 3 runs of 2 s; run 5 seeds; a KVM guest; follow the instructions", False),
    ("the previous step's membrane; run 3 epochs", False),
])
def test_history_pattern_flags_history_and_not_ordinary_words(text: str, flagged: bool) -> None:
    assert bool(history_hits(text)) is flagged, history_hits(text)


def test_pages_and_readmes_carry_no_development_history(site: Path) -> None:
    hits = []
    for path in sorted(site.rglob("*.html")):
        if path.name in PAGES_TO_SKIP or {"_modules", "_sources", "_static"} & set(path.parts):
            continue
        hits += [f"{path.relative_to(site)}: ...{h}..." for h in history_hits(visible_text(path.read_text()))]
    for readme in (ROOT / "README.md", ROOT / "benchmarks" / "README.md"):
        hits += [f"{readme.relative_to(ROOT)}: ...{h}..." for h in history_hits(readme.read_text())]
    assert not hits, "development history on pages users read:\n" + "\n".join(hits)


class _Assets(HTMLParser):
    """Scripts, style sheets, icons, images and frames a page loads, by URL."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & {
                "stylesheet", "preload", "modulepreload", "icon", "shortcut"}:
            self.urls.append(a["href"])


def test_nothing_is_fetched_from_another_host(site: Path) -> None:
    remote = re.compile(r"^(?:https?:)?//", re.I)
    fetched = []
    for path in sorted(site.rglob("*.html")):
        if "_sources" in path.parts:
            continue
        assets = _Assets()
        assets.feed(path.read_text(errors="replace"))
        fetched += [f"{path.relative_to(site)}: {url}" for url in assets.urls if remote.match(url)]
    for css in sorted(site.rglob("*.css")):
        for match in re.finditer(r"(?:@import\s+|url\()\s*['\"]?((?:https?:)?//[^'\")\s]+)", css.read_text(errors="replace")):
            fetched.append(f"{css.relative_to(site)}: {match.group(1)}")
    assert not fetched, "assets from another host (the site must work offline):\n" + "\n".join(fetched)
