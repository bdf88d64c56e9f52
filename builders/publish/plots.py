"""PNG plots for dataset cards: length histograms and category bars.

Uses matplotlib's object API on the Agg canvas (no pyplot global state, no display) and a CJK font
when one is installed, so Chinese category labels do not render as empty boxes.
"""

from __future__ import annotations

import logging
import subprocess
from collections import Counter
from functools import lru_cache
from pathlib import Path

from medmill.builders.publish.stats import DatasetStats

log = logging.getLogger(__name__)

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
    "Noto Serif CJK SC",
    "AR PL UMing CN",
)
COLORS = ("#3b82f6", "#10b981", "#ef4444", "#f59e0b")
PLOTS_DIR = "plots"


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The first installed CJK-capable font family matplotlib knows, or None."""
    from matplotlib import font_manager

    for attempt in range(2):
        installed = {f.name for f in font_manager.fontManager.ttflist}
        for name in CJK_FONTS:
            if name in installed:
                return name
        if attempt == 0:
            _add_system_cjk_fonts(font_manager)  # installed after matplotlib cached its font list
    log.warning("no CJK font found (install fonts-noto-cjk); Chinese labels in plots will not render")
    return None


def _add_system_cjk_fonts(font_manager) -> None:
    """Register the CJK fonts fontconfig knows with matplotlib (its font cache may predate them)."""
    try:
        listing = subprocess.run(
            ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for line in listing.splitlines():
        path = line.split(":")[0].strip()
        if path:
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, cjk_font()


def _font_kw(font: str | None) -> dict:
    return {"fontfamily": [font, "DejaVu Sans"]} if font else {}


def length_histogram(stats: DatasetStats, out: Path) -> bool:
    """Overlaid character-length histograms of each field (prompt / answer, chosen / rejected, text)."""
    series = [(name, d) for name, d in stats.chars.items() if d.count]
    if not series:
        return False
    fig, font = _figure(7, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, dist) in enumerate(series):
        counts, edges = dist.histogram(bins=30)
        ax.stairs(counts, edges, label=f"{name} (median {dist.quantile(0.5)})", color=COLORS[i % len(COLORS)], linewidth=1.6)
    ax.set_xlabel("characters (clipped at p99)", **_font_kw(font))
    ax.set_ylabel("records", **_font_kw(font))
    ax.set_title("Length distribution", **_font_kw(font))
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.16)  # fixed: a tight layout costs 2x
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})
    return True


def category_bars(key: str, counter: Counter, out: Path, top: int = 20) -> bool:
    """Horizontal bars of the `top` most frequent values of one meta key."""
    items = counter.most_common(top)
    if not items:
        return False
    fig, font = _figure(7, 0.8 + 0.28 * len(items))
    ax = fig.add_subplot(1, 1, 1)
    labels = [str(k) for k, _ in reversed(items)]
    ax.barh(range(len(items)), [v for _, v in reversed(items)], color=COLORS[0])
    ax.set_yticks(range(len(items)), labels, **_font_kw(font))
    ax.set_xlabel("records", **_font_kw(font))
    ax.set_title(f"meta.{key}" + (f" (top {top} of {len(counter)})" if len(counter) > top else ""), **_font_kw(font))
    ax.spines[["top", "right"]].set_visible(False)
    # room for the longest label (CJK glyphs are about one font size wide); fixed margins, no tight layout
    widest = max(sum(2 if ord(c) > 0x2E80 else 1 for c in label) for label in labels)
    height_in = fig.get_figheight()
    fig.subplots_adjust(left=min(0.5, 0.04 + 0.0105 * widest), right=0.97, top=1 - 0.35 / height_in, bottom=0.5 / height_in)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})
    return True


def write_plots(stats: DatasetStats, out_dir: Path, max_category_plots: int = 3) -> list[tuple[str, str]]:
    """Write the card's plots into `out_dir/plots/`; return (title, path relative to out_dir)."""
    plots: list[tuple[str, str]] = []
    rel = f"{PLOTS_DIR}/length_hist.png"
    if length_histogram(stats, out_dir / rel):
        plots.append(("Length distribution (characters)", rel))
    for key, counter in list(stats.categories.items())[:max_category_plots]:
        if len(counter) < 2:
            continue
        rel = f"{PLOTS_DIR}/meta_{_slug(key)}.png"
        if category_bars(key, counter, out_dir / rel):
            plots.append((f"meta.{key}", rel))
    return plots


def existing_plots(out_dir: Path) -> list[tuple[str, str]]:
    """The plots a previous render left in `out_dir/plots/` (to link them without re-drawing)."""
    found = []
    for png in sorted((Path(out_dir) / PLOTS_DIR).glob("*.png")):
        title = "Length distribution (characters)" if png.stem == "length_hist" else png.stem.replace("meta_", "meta.", 1)
        found.append((title, f"{PLOTS_DIR}/{png.name}"))
    found.sort(key=lambda item: item[1] != f"{PLOTS_DIR}/length_hist.png")
    return found


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() and c.isascii() else "_" for c in text).strip("_") or "key"
