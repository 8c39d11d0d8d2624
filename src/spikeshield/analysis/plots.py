"""Plots (PNG) of result tables. Needs matplotlib (``pip install spikeshield[plot]``).

Figures are made with ``matplotlib.figure.Figure`` on the Agg canvas, never through pyplot: the
caller's matplotlib backend, open figures and pyplot state are left as they were. Without
matplotlib every plotting function returns None or nothing, with one warning per process, and
the commands say which figures were skipped (:func:`skipped_note`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikeshield.errors import warn
from spikeshield.io import atomic_write_bytes

#: how to get the figures, for the warning and the commands' summaries
INSTALL_HINT = "pip install 'spikeshield[plot]'"
_warned = False


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def skipped_note(what: str = "the figures (PNG)") -> str | None:
    """A line for a command's summary saying that ``what`` was not drawn and how to get it; None
    where matplotlib is installed."""
    if have_matplotlib():
        return None
    return f"skipped {what}: matplotlib is not installed ({INSTALL_HINT})"


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **options: Any) -> Any:
    """``(figure, axes)`` as ``Figure.subplots`` makes them (``options``: ``squeeze``...), on an
    Agg canvas of its own; None without matplotlib (warning once per process)."""
    global _warned
    if not have_matplotlib():
        if not _warned:
            _warned = True
            warn(f"matplotlib is not installed: figures are skipped ({INSTALL_HINT})")
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **options)


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


#: line styles and markers that tell curves of the same colour apart (matplotlib's colour cycle
#: has 10 colours: curve 11 looked like curve 1)
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def curve_style(index: int) -> dict[str, str]:
    """Colour, line style and marker of curve ``index`` (0-based) of a plot: the colour cycles
    through matplotlib's 10 (``C0``..``C9``); each further round of 10 changes the line style
    and the marker, so the first 40 curves differ in colour and line style, the first 80 in
    colour and marker. Curves 0-9 look as matplotlib draws them (solid, circles)."""
    if index < 0:
        raise ValueError(f"curve index must be >= 0, got {index}")
    round_ = index // 10
    return {
        "color": f"C{index % 10}",
        "linestyle": LINE_STYLES[round_ % len(LINE_STYLES)],
        "marker": MARKERS[round_ % len(MARKERS)],
    }


def plot_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str = "accuracy",
    errors: dict[str, Sequence[float]] | None = None,
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]] | None = None,
) -> Path | None:
    """Line plot of ``{label: (xs, ys)}`` (optionally ± ``errors``) saved atomically as PNG.

    ``panels`` draws several such plots side by side instead (``{panel title: curves}``).
    Returns the path, or None (with a warning) when matplotlib is not installed.
    """
    groups = panels or {title: curves}
    made = subplots(1, len(groups), figsize=(4.8 * len(groups), 3.8), squeeze=False)
    if made is None:
        return None
    fig, axes = made
    for ax, (panel_title, panel_curves) in zip(axes[0], groups.items()):
        for index, (label, (xs, ys)) in enumerate(panel_curves.items()):
            err = (errors or {}).get(label)
            ax.errorbar(
                list(xs),
                list(ys),
                yerr=list(err) if err is not None else None,
                ms=4,
                capsize=3,
                label=label,
                **curve_style(index),
            )
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    if panels:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def table_to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV text (columns in first-seen order)."""
    import csv

    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def format_table(
    rows: list[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None
) -> str:
    """A plain-text aligned table (also valid Markdown)."""
    headers = list(headers or columns)

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join([line, sep, *body])
