"""Small HTML building blocks shared by the participant and cohort reports.

Pages are self-contained: inline CSS, no external fonts or scripts, images referenced
by relative paths (or data URIs), so a page opens from a ``file://`` URL offline.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from qsmbids import __version__

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; line-height: 1.45; }
header { background: #12263a; color: white; padding: 14px 28px; }
header h1 { margin: 0; font-size: 1.45em; }
header p { margin: 4px 0 0; color: #c9d6e3; font-size: 0.9em; }
nav { padding: 8px 28px; background: #e8eef4; font-size: 0.9em; }
nav a { margin-right: 14px; }
main { padding: 8px 28px 40px; max-width: 1400px; }
h2 { border-bottom: 2px solid #12263a; padding-bottom: 3px; margin-top: 34px; }
h3 { margin: 22px 0 6px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #ccc; background: black; }
figure.light img { background: white; }
figcaption { font-size: 0.88em; color: #444; margin-top: 3px; max-width: 1100px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: right; }
th { background: #e8eef4; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr.flag td { background: #ffe3e0; }
td, th { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
.warnings { background: #fff4e5; border-left: 5px solid #e67700; padding: 8px 16px;
            margin: 12px 0; }
.warnings.none { background: #eaf7ea; border-left-color: #2f9e44; }
.warnings li { margin: 3px 0; }
.methods { background: white; border: 1px solid #ddd; padding: 10px 16px;
           white-space: pre-wrap; font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; }
#image-check { display: none; background: #ffe3e0; border: 2px solid #c92a2a;
               padding: 8px 16px; margin: 10px 28px; }
"""

# After loading, mark the page with the number of images that failed to load and tell
# the reader (a broken figure must not pass unnoticed). No network, no dependencies.
_IMAGE_CHECK = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  document.body.setAttribute("data-images-total", String(imgs.length));
  document.body.setAttribute("data-images-broken", String(broken.length));
  if (broken.length) {
    var box = document.getElementById("image-check");
    box.textContent = broken.length + " figure(s) could not be loaded: " +
      broken.map(function (im) { return im.getAttribute("src"); }).join(", ");
    box.style.display = "block";
  }
});
</script>
"""


def esc(text: object) -> str:
    """HTML-escape ``text`` (quotes included)."""
    return html.escape(str(text), quote=True)


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """A whole HTML page.

    Parameters
    ----------
    title
        Title (header and browser tab).
    subtitle
        Line under the title.
    nav
        (anchor id, label) pairs for the navigation bar.
    body
        HTML of the main part.
    """
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>\n"
        f"<nav>{links}</nav>\n<div id=\"image-check\"></div>\n<main>\n{body}\n</main>\n"
        f"<footer class=\"note\" style=\"padding: 0 28px 20px\">qsmbids {esc(__version__)}"
        "</footer>\n"
        f"{_IMAGE_CHECK}</body>\n</html>\n"
    )


def figure(src: str, alt: str, caption: str, *, light: bool = False) -> str:
    """An ``<figure>`` with an image (``src`` relative to the page, or a data URI)."""
    cls = ' class="light"' if light else ""
    return (f'<figure{cls}><img src="{esc(src)}" alt="{esc(alt)}" loading="eager">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def warning_list(messages: Iterable[str], *, none_text: str = "No QC warnings.",
                 heading: str = "QC warnings") -> str:
    """A highlighted list of warnings (a green note when there are none)."""
    items = [f"<li>{esc(m)}</li>" for m in messages]
    if not items:
        return f'<div class="warnings none">{esc(none_text)}</div>'
    return (f'<div class="warnings"><strong>{esc(heading)}</strong>'
            f'<ul>{"".join(items)}</ul></div>')


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table(columns: Sequence[str], rows: Iterable[Mapping[str, object]], *,
          flagged: Iterable[bool] | None = None, headers: Mapping[str, str] | None = None,
          digits: int = 4) -> str:
    """An HTML table of ``rows`` (numbers right-aligned and rounded, text left-aligned).

    Parameters
    ----------
    columns
        Keys of ``rows`` to show, in order.
    rows
        One mapping per row.
    flagged
        Per row, True to highlight it.
    headers
        Column key -> header text (default: the key).
    digits
        Significant digits of numbers.
    """
    headers = headers or {}
    rows = list(rows)
    flags = list(flagged) if flagged is not None else [False] * len(rows)
    head = "".join(f'<th class="text">{esc(headers.get(c, c))}</th>' for c in columns)
    body = []
    for row, flag in zip(rows, flags, strict=True):
        cells = []
        for column in columns:
            value = row.get(column, "")
            text = "" if value is None else str(value)
            if _is_number(text) and not isinstance(value, bool):
                number = float(text)
                shown = text if number.is_integer() and "." not in text else f"{number:.{digits}g}"
                cells.append(f"<td>{esc(shown)}</td>")
            else:
                cells.append(f'<td class="text">{esc(text)}</td>')
        row_class = ' class="flag"' if flag else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def relative_src(target: str | os.PathLike, page_dir: str | os.PathLike) -> str:
    """URL path of ``target`` relative to the folder of the page (forward slashes)."""
    return Path(os.path.relpath(target, page_dir)).as_posix()
