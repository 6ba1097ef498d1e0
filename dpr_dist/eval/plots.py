"""PNG plots of the experiments (paper Figures 6, 7 and 8), drawn with matplotlib's Agg canvas.

Every function returns the PNG as bytes and touches no global matplotlib state (no
``pyplot``, no backend switch): figures are :class:`matplotlib.figure.Figure` objects on
a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so they are safe in worker
processes and tests alike.

* :func:`grouped_bars` -- metrics of several settings side by side with standard
  deviations as error bars (Figure 6: thresholds);
* :func:`line_panels` -- metrics against a parameter, one panel per model (Figure 7:
  negative samples);
* :func:`group_scatter` -- a 2-D embedding coloured by patient group (Figure 8: t-SNE of
  the mask vectors).
"""

from __future__ import annotations

import io as _io
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: (mean ``[n]``, standard deviation ``[n]``) of one series.
Series = tuple[Sequence[float], Sequence[float]]

#: Colour of points outside every group in :func:`group_scatter`.
OTHER_COLOR = "#c8c8c8"


def _png(fig: Figure, dpi: int = 120) -> bytes:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _check_series(series: Mapping[str, Series], n: int, what: str) -> None:
    if not series:
        raise ValueError(f"{what}: no series to plot")
    for name, (mean, std) in series.items():
        if len(mean) != n or len(std) != n:
            raise ValueError(f"{what}: series {name!r} has {len(mean)} means and {len(std)} deviations, "
                             f"expected {n} (one per x value)")


def grouped_bars(groups: Sequence[str], series: Mapping[str, Series], *, ylabel: str = "",
                 title: str = "") -> bytes:
    """Bars of every series for every group, with standard-deviation error bars.

    Args:
        groups: ``G`` x-axis labels (e.g. ``WG-0.01``).
        series: ``{name: (mean [G], std [G])}``, e.g. precision, recall, F1.
        ylabel: Y-axis label.
        title: Figure title.

    Returns:
        The PNG.

    Raises:
        ValueError: on no series or series of the wrong length.
    """
    _check_series(series, len(groups), "grouped_bars")
    fig = Figure(figsize=(max(5.0, 1.1 * len(groups) + 2), 3.6))
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(series)
    lows = []
    for i, (name, (mean, std)) in enumerate(series.items()):
        mean, std = np.asarray(mean, float), np.asarray(std, float)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, mean, width, yerr=std, capsize=3, label=name)
        lows.append(np.nanmin(mean - std) if len(mean) else 0.0)
    ax.set_xticks(x, list(groups))
    ax.set_ylabel(ylabel)
    top = max(float(np.nanmax(np.asarray(m, float) + np.asarray(s, float))) for m, s in series.values())
    ax.set_ylim(max(0.0, min(lows) - 0.05), top + 0.05 * max(top, 1e-3) + 0.02)
    ax.set_title(title)
    ax.legend(loc="upper left", ncols=len(series), fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def line_panels(x: Sequence[float], panels: Mapping[str, Mapping[str, Series]], *, xlabel: str = "",
                ylabel: str = "", title: str = "") -> bytes:
    """One panel per entry of ``panels``: each series against ``x`` with error bars.

    Args:
        x: ``X`` parameter values (e.g. negative samples 1, 5, 10, 20).
        panels: ``{panel title: {series name: (mean [X], std [X])}}``.
        xlabel, ylabel: Axis labels.
        title: Figure title.

    Returns:
        The PNG.

    Raises:
        ValueError: on no panels or series of the wrong length.
    """
    if not panels:
        raise ValueError("line_panels: no panels to plot")
    for name, series in panels.items():
        _check_series(series, len(x), f"line_panels[{name!r}]")
    fig = Figure(figsize=(4.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, series) in zip(axes, panels.items()):
        for label, (mean, std) in series.items():
            ax.errorbar(list(x), mean, yerr=std, marker="o", capsize=3, label=label)
        ax.set_xticks(list(x))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _png(fig)


def group_scatter(xy: np.ndarray, labels: Sequence[str], order: Sequence[str], *, other: str = "other",
                  title: str = "") -> bytes:
    """Points coloured by group; points of ``other`` in grey underneath.

    Args:
        xy: ``[N, 2]`` coordinates (e.g. t-SNE of mask vectors).
        labels: ``N`` group names.
        order: Groups in legend order (``other`` may be among them; groups without points
            are listed with a count of 0).
        other: The label of points outside every group.
        title: Figure title.

    Returns:
        The PNG.

    Raises:
        ValueError: on a shape mismatch.
    """
    xy = np.asarray(xy, dtype=float)
    labels = np.asarray(labels, dtype=object)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(labels) != len(xy):
        raise ValueError(f"group_scatter: expected xy [N, 2] and N labels, got {xy.shape} and {len(labels)}")
    fig = Figure(figsize=(5.6, 4.8))
    ax = fig.add_subplot()
    rest = labels == other
    ax.scatter(xy[rest, 0], xy[rest, 1], s=8, c=OTHER_COLOR, label=f"{other} ({int(rest.sum())})")
    for name in (g for g in order if g != other):
        sel = labels == name
        ax.scatter(xy[sel, 0], xy[sel, 1], s=14, label=f"{name} ({int(sel.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize="small", markerscale=1.5)
    return _png(fig)
