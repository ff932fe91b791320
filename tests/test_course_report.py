"""The HTML build of a course run: the index of notebooks and each rendered
page, checked on small inputs and on every stored course notebook."""

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from helpers.course import report
from helpers.course.report import NotebookResult

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
ids = [path.stem for path in NOTEBOOKS]


REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)


class _Resources(HTMLParser):
    """What a page would fetch from another host when opened: scripts,
    stylesheets and other linked files, images, frames, CSS ``url()`` and
    JavaScript ``import()``."""

    def __init__(self, page):
        super().__init__()
        self.remote, self._tag = [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        for name, value in attrs:
            if name in ("src", "href") and tag != "a" and value and REMOTE.match(value):
                self.remote.append(f"<{tag} {name}={value}>")

    def handle_data(self, data):
        if self._tag == "style":
            found = re.findall(r"(?:url\(|@import)\s*['\"]?((?:https?:)?//[^'\")\s]+)", data)
        elif self._tag == "script":
            found = re.findall(r"import\s*\(\s*['\"`]((?:https?:)?//[^'\"`]+)", data)
        else:
            found = []
        self.remote += [f"<{self._tag}> {url}" for url in found]

    def handle_endtag(self, tag):
        self._tag = None


class _Page(HTMLParser):
    """Collects the links and the table rows (cell texts) of a page."""

    def __init__(self, page):
        super().__init__()
        self.links, self.rows = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])
        elif tag == "tr":
            self.rows.append([])

    def handle_data(self, data):
        if self.rows and data.strip():
            self.rows[-1].append(data.strip())


def test_index_lists_in_order_escapes_and_links_existing_pages(tmp_path):
    (tmp_path / "01_a&b.html").write_text("page")
    results = [
        NotebookResult("01_a&b", 12.4, held=3, failed=0),
        NotebookResult("02_<x>", 7.6, held=1, failed=1),
        NotebookResult("03_c", 1.0, held=0, failed=0, error="ValueError: <bad>"),
    ]
    page = report.index_html(results, tmp_path, "Run <1>", "Parameters: seed=3")
    assert "<x>" not in page and "<bad>" not in page and "Run <1>" not in page
    parsed = _Page(page)
    assert parsed.links == ["01_a%26b.html"], "only the page that exists is linked"
    assert parsed.rows[1:] == [
        ["01_a&b", "12", "3", "0", "ok"],
        ["02_<x>", "8", "1", "1", "claim failed"],
        ["03_c", "1", "0", "0", "error: ValueError: <bad>"],
    ]
    assert "Parameters: seed=3" in page


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_html_page_embeds_the_stored_plots_and_claims(path, tmp_path):
    copy = Path(shutil.copy(path, tmp_path))
    page = report.render_html(copy).read_text(encoding="utf-8")
    stored = nbformat.read(path, as_version=4)
    outputs = [o for c in stored.cells for o in c.get("outputs", [])]
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == images
    claims = [
        line
        for o in outputs
        if o.get("name") == "stdout"
        for line in o.text.splitlines()
        if line.startswith(("✔", "✘"))
    ]
    assert claims, "a course notebook stores its claim lines"
    assert all(line.split(" ", 1)[1][:40] in page for line in claims)
    # Workshops have weak wifi and self-learners are often offline: the page
    # must show everything from the file alone, nothing fetched from a CDN.
    assert _Resources(page).remote == [], "the page loads files from another host"


def test_remote_references_are_found():
    page = """<html><head>
    <script src="https://cdn.example/require.js"></script>
    <script src="local.js"></script>
    <link rel="stylesheet" href="//fonts.example/a.css">
    <style>@import url("https://fonts.example/b.css"); .x { background: url(data:,) }</style>
    <script type="module">const m = await import("https://cdn.example/mermaid.mjs");</script>
    </head><body><a href="https://keras.io">Keras docs</a><img src="data:image/png;base64,AA">
    </body></html>"""
    assert _Resources(page).remote == [
        "<script src=https://cdn.example/require.js>",
        "<link href=//fonts.example/a.css>",
        "<style> https://fonts.example/b.css",
        "<script> https://cdn.example/mermaid.mjs",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_has_no_latex_the_html_pages_would_show_raw(path):
    # The HTML pages load no MathJax (it would come from a CDN): formulas are
    # written in plain text or Unicode (x², √, ∂L/∂w), never in LaTeX.
    stored = nbformat.read(path, as_version=4)
    latex = re.compile(r"\$\$|\$[^\s$][^$\n]*\$|\\\(|\\\[|\\begin\{")
    found = [
        m.group()
        for c in stored.cells
        if c.cell_type == "markdown"
        for m in latex.finditer(c.source)
    ]
    assert found == [], "LaTeX in markdown: the HTML page would show it raw"
