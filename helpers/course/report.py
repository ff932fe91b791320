"""What a course run leaves to read: each executed notebook rendered to a
self-contained HTML page, and a summary of the run (`summary.md`, and
`index.html` linking the pages), one row per notebook with its run time and
its claims held and failed."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import quote


@dataclass
class NotebookResult:
    name: str
    seconds: float
    held: int
    failed: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0

    @property
    def status(self) -> str:
        """``ok``, ``claim failed`` or ``error: <the error>``."""
        if self.error:
            return f"error: {self.error}"
        return "claim failed" if self.failed else "ok"


def summary_table(results: Sequence[NotebookResult]) -> str:
    """A Markdown table: notebook, seconds, claims held / failed, status."""
    lines = [
        "| notebook | seconds | claims held | claims failed | status |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.seconds:.0f} | {r.held} | {r.failed} | {r.status} |")
    return "\n".join(lines)


# nbconvert's "lab" template, less what it loads from a CDN when the page
# opens: require.js (only for JavaScript and widget outputs, which the course
# has none of), MathJax 2 (the notebooks write formulas without LaTeX, and a
# test keeps it so), Mermaid (no diagrams) and the widget manager. Workshops
# have weak wifi and self-learners are often offline: the page must show
# everything from the file alone. Its CSS is inlined by the template already.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def render_html(notebook_path: Path) -> Path:
    """Render an (executed) notebook to a self-contained HTML page next to it,
    plots embedded, nothing loaded from another host; return the page's path."""
    from nbconvert import HTMLExporter  # slow to import: only when rendering

    exporter = HTMLExporter(template_name="lab", raw_template=OFFLINE_TEMPLATE, embed_images=True)
    body, _ = exporter.from_filename(str(notebook_path))
    page = notebook_path.with_suffix(".html")
    page.write_text(body, encoding="utf-8")
    return page


INDEX = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto;
         padding: 0 1rem; line-height: 1.5; }
  table { border-collapse: collapse; }
  th, td { padding: 0.3rem 0.9rem; border-bottom: 1px solid #ccc; text-align: left; }
  td.number { text-align: right; }
  .failed { color: #b00020; font-weight: bold; }
</style>
</head>
<body>
<h1>$title</h1>
$subtitle
<table>
<thead>
<tr><th>notebook</th><th>seconds</th><th>claims held</th><th>claims failed</th><th>status</th></tr>
</thead>
<tbody>
$rows
</tbody>
</table>
</body>
</html>
""")


def index_html(
    results: Sequence[NotebookResult], pages_dir: Path, title: str, subtitle: str = ""
) -> str:
    """A static HTML page listing the notebooks in the order given, each with
    its run time, claims held / failed and status, and a link to its page
    ``<name>.html`` when `pages_dir` has one."""
    rows = []
    for r in results:
        name = html.escape(r.name)
        if (pages_dir / f"{r.name}.html").exists():
            name = f'<a href="{html.escape(quote(r.name + ".html"))}">{name}</a>'
        status = f'<span class="failed">{html.escape(r.status)}</span>' if not r.ok else "ok"
        rows.append(
            f'<tr><td>{name}</td><td class="number">{r.seconds:.0f}</td>'
            f'<td class="number">{r.held}</td><td class="number">{r.failed}</td>'
            f"<td>{status}</td></tr>"
        )
    return INDEX.substitute(
        title=html.escape(title),
        subtitle=f"<p>{html.escape(subtitle)}</p>" if subtitle else "",
        rows="\n".join(rows),
    )
