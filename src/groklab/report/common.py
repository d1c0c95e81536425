"""Shared pieces of the reports: careful readers, HTML helpers, the page shell, atomic writes.

Readers turn every problem with an input file into a one-line `GroklabError` naming the path,
so `groklab report` never writes a page from half-read data. Pages are one self-contained HTML
file: plotly.js is embedded once, figures follow as divs; nothing is fetched from the network.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from groklab.errors import GroklabError

# ---------------------------------------------------------------------------------------------
# readers


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GroklabError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GroklabError(f"{path}: not valid JSON ({_first_line(e)})") from None


class Columns(dict):
    """A Parquet table as {column: numpy array (numbers) or list (other)}; ``ints`` names the
    integer columns, which arrive as float arrays (NaN for null) when they hold nulls."""

    ints: frozenset = frozenset()


def read_parquet(path: Path) -> Columns:
    """Columns of a Parquet file: numeric columns as float/int numpy arrays, others as lists."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path).read()  # not pq.read_table: that imports pyarrow.dataset (slow)
    except FileNotFoundError:
        raise GroklabError(f"{path}: file not found") from None
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise GroklabError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
    # to_pydict, not to_numpy: pyarrow's to_numpy imports pandas (over a second on a busy machine)
    # and the report has a 5 s budget. The tables are small (evaluations x members).
    import pyarrow.types as pt

    data = table.to_pydict()
    out = Columns()
    out.ints = frozenset(f.name for f in table.schema if pt.is_integer(f.type))
    for name, fld in zip(table.column_names, table.schema):
        vals = data[name]
        if _is_numeric(fld.type):
            if table.column(name).null_count:
                out[name] = np.array([np.nan if v is None else v for v in vals], dtype=float)
            else:
                kind = float if pt.is_floating(fld.type) else bool if pt.is_boolean(fld.type) else np.int64
                out[name] = np.asarray(vals, dtype=kind)
        else:
            out[name] = vals
    return out


def _is_numeric(t: Any) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t)


def require_columns(cols: dict, need: Sequence[str], path: Path) -> None:
    missing = [c for c in need if c not in cols]
    if missing:
        raise GroklabError(f"{path}: missing column(s) {', '.join(missing)}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# ---------------------------------------------------------------------------------------------
# formatting and HTML


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A number as a researcher reads it; everything else as text. None shows as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "—"
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-4):
            return f"{v:.3e}"
        if v.is_integer():
            return f"{v:.1f}"
        if 0.1 <= abs(v) < 1:  # accuracies: 0.99996 reads 1.0000, never "1" (an exact 1.0 reads 1.0)
            return f"{v:.4f}"
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if len(value) <= 12 else f"[{len(value)} values]"
    if isinstance(value, dict):
        return json.dumps(value)[:300]
    return str(value)


def jsonable(value: Any) -> Any:
    """A value for ``data-value``: numpy scalars as Python ones, NaN (a missing number) as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def cell(value: Any, ident: str | None = None, **data: Any) -> str:
    """A table cell showing ``fmt(value)``; with ``ident`` it carries a stable id and the exact
    JSON value in ``data-value`` so tests and scripts can read the numbers back."""
    attrs = ""
    if ident is not None:
        attrs += f' id="{esc(ident)}" data-value="{esc(json.dumps(jsonable(value)))}"'
    for k, v in data.items():
        attrs += f' data-{k.replace("_", "-")}="{esc(v)}"'
    num = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    cls = ' class="num"' if num else ""
    return f"<td{attrs}{cls}>{esc(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", ident: str = "") -> str:
    """``rows`` hold cells already rendered with `cell` (or raw ``<td>`` strings)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    id_attr = f' id="{esc(ident)}"' if ident else ""
    return f'<table class="{esc(cls)}"{id_attr}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def kv_table(d: dict, ident: str = "") -> str:
    rows = [[f"<th>{esc(k)}</th>", cell(v)] for k, v in flatten(d).items()]
    return table(["field", "value"], rows, cls="kv", ident=ident)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def note(text: str, kind: str = "info") -> str:
    """A highlighted line: kind is info, warn or missing. ``text`` is HTML (escape first)."""
    return f'<p class="note {esc(kind)}">{text}</p>'


# ---------------------------------------------------------------------------------------------
# figures

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
TRAIN_COLOR, TEST_COLOR = "#1f77b4", "#d62728"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def plotly_div(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    top = fig.layout.margin.t if fig.layout.margin.t is not None else 50
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=top, b=50))
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOTLY_CONFIG)


def png_bytes(fig: Any) -> bytes:
    """A matplotlib `Figure` (made without pyplot, so no global state) rendered by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, pil_kwargs={"compress_level": 3})  # zlib 6 (default) is slower, barely smaller
    return buf.getvalue()


def log_scale(ax: Any, x: bool = True, y: bool = False) -> None:
    """Log scale where the axes hold positive finite data (an empty or all-NaN panel would make
    matplotlib raise); such a panel stays linear and empty."""
    lim = ax.dataLim
    if x and np.isfinite([lim.x0, lim.x1]).all() and lim.x0 > 0:
        ax.set_xscale("log")
    if y and np.isfinite([lim.y0, lim.y1]).all() and lim.y0 > 0:
        ax.set_yscale("log")


def lean_log_axes(*axes: Any) -> None:
    """Log axes without minor ticks and with plain labels ("1000", not mathtext 10^3): each tick
    is an object, and mathtext is parsed per label; they were most of a PNG's time (5 s budget)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_minor_locator(NullLocator())
                axis.set_major_formatter(plain)


def xstep(steps: np.ndarray) -> np.ndarray:
    """The step axis is logarithmic and step 0 (at init) exists, so curves are drawn at step + 1."""
    return np.asarray(steps, dtype=float) + 1.0


XLABEL = "step + 1 (log scale; step 0 = at init)"

# ---------------------------------------------------------------------------------------------
# the page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:1em 2em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0} code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em;display:block;overflow-x:auto;max-width:100%} th,td{border:1px solid #ddd;padding:.2em .6em;text-align:left}
th{background:#f6f6f6;white-space:nowrap} td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer} table.sortable td{white-space:nowrap} table.sortable th:after{content:" \\2195";color:#aaa}
.note{padding:.4em .8em;border-left:4px solid #888;background:#f7f7f7}
.note.warn{border-color:#d62728;background:#fdf0f0} .note.missing{border-color:#ff9f0e;background:#fff7ec}
.cols{display:flex;flex-wrap:wrap;gap:2em} .plot{min-height:300px}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.85em}
"""

# Sorting for tables with class "sortable": click a header; numbers sort as numbers (data-value).
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-sort') !== 'asc';
      t.querySelectorAll('th').forEach(function(h){ h.removeAttribute('data-sort'); });
      th.setAttribute('data-sort', asc ? 'asc' : 'desc');
      function key(r){ var c = r.cells[i], v = c.getAttribute('data-value');
        if (v === null) v = c.textContent; var n = parseFloat(v);
        return isNaN(n) ? v : n; }
      rows.sort(function(a, b){ var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def page(title: str, subtitle: str, body: str) -> str:
    """The whole self-contained page: plotly.js inline, then the body, then the sort script."""
    from plotly.offline import get_plotlyjs

    from groklab.science import VERSION as __version__

    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"generator\" content=\"groklab {esc(__version__)}\">"
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head>\n<body>\n"
        f"<h1>{esc(title)}</h1><p class=\"sub\">{subtitle}</p>\n{body}\n"
        f"<script>{SORT_JS}</script>\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# writing


def write_atomic(files: dict[Path, bytes | str]) -> None:
    """Write each file atomically (train.record.atomic_write: temp file, fsync, rename), so a reader
    never sees a half-written report and a full disk leaves the previous page intact, in one line."""
    from groklab.train.record import atomic_write

    for path, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp, data=data: Path(tmp).write_bytes(data))


def rel_link(target: Path, start: Path) -> str:
    """A relative href from folder ``start`` to ``target`` (POSIX separators)."""
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()
