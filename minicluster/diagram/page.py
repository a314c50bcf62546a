"""One self-contained HTML page: the sequence diagram (rendered in the browser by the Mermaid
script inlined into the page) above the slot timeline (inline SVG). Nothing is loaded from
anywhere: the page works offline and from a file. Without a Mermaid build on the machine
(assets.py) the page shows the diagram's Mermaid source instead, and says how to get one."""

from __future__ import annotations

import html
import re

_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)

NO_RENDERER = (
    "Mermaid's renderer is not on this machine: run python -m minicluster.diagram.fetch (or set "
    "MINICLUSTER_MERMAID_JS) and write the page again. The source below is the diagram; GitHub "
    "and Mermaid's editors draw it as it is."
)


def inline_script(source: str) -> str:
    """Script text that cannot end its <script> element early."""
    return _SCRIPT_END.sub(r"<\\/\1", source)


def _scripts(mermaid_js: str) -> str:
    return f"""<script>
{inline_script(mermaid_js)}
</script>
<script>
mermaid.initialize({{ startOnLoad: false, securityLevel: "strict", maxTextSize: 2000000,
  sequence: {{ showSequenceNumbers: false }} }});
mermaid.run({{ querySelector: "#sequence" }}).catch(function (error) {{
  document.getElementById("diagram-error").textContent = String(error && error.message || error);
}});
</script>
"""


def render_page(
    title: str, mermaid_text: str, svg: str, mermaid_js: str | None, summary: str = ""
) -> str:
    """The page's HTML. `mermaid_js` is the text of Mermaid's minified build (assets.py), or
    None: then the sequence is shown as its Mermaid source only."""
    if mermaid_js is not None:
        sequence = (
            f'<pre class="mermaid" id="sequence">\n{html.escape(mermaid_text)}</pre>\n'
            '<p id="diagram-error"></p>\n'
        )
        scripts = _scripts(mermaid_js)
    else:
        sequence = f'<p id="no-renderer">{html.escape(NO_RENDERER)}</p>\n'
        scripts = ""
    opened = " open" if mermaid_js is None else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.3em; }}
h2 {{ font-size: 1.1em; margin-top: 2em; }}
.timeline {{ overflow-x: auto; }}
details pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
#diagram-error {{ color: #b00000; white-space: pre-wrap; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
<h2>Messages</h2>
{sequence}<details{opened}><summary>Mermaid source</summary>
<pre>{html.escape(mermaid_text)}</pre></details>
<h2>Slots over time</h2>
<div class="timeline">
{svg}
</div>
{scripts}</body>
</html>
"""
