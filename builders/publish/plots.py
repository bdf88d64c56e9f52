"""PNG plots for dataset cards: length histograms and category bars.

Uses matplotlib's object API on the Agg canvas (no pyplot global state, no display). Chinese labels
need a CJK font, and most containers have none: the font comes with the pip install instead
(Noto Sans SC, SIL OFL, from the `pylopdf-fonts-zh-cn` wheel, which holds only font files), so a
card looks the same on every machine. PNG rather than SVG-with-text: the Hub and every Markdown
viewer show PNG, and text left as text would still need a CJK font on the reader's side. A system CJK
font is the fallback when the wheel is missing; with no font at all, one warning replaces
matplotlib's per-glyph ones.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from functools import lru_cache, partial
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


def bundled_font_file() -> Path | None:
    """Noto Sans SC as installed by pip (a dependency of medmill), or None."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The CJK font family plots use: the pip-installed one, else a system one, else None."""
    from matplotlib import font_manager

    bundled = bundled_font_file()
    if bundled is not None:
        try:
            font_manager.fontManager.addfont(str(bundled))
            return font_manager.FontProperties(fname=str(bundled)).get_name()
        except (OSError, RuntimeError, ValueError) as e:
            log.warning("cannot load the bundled CJK font %s: %s", bundled, e)
    for attempt in range(2):
        installed = {f.name for f in font_manager.fontManager.ttflist}
        for name in CJK_FONTS:
            if name in installed:
                return name
        if attempt == 0:
            _add_system_cjk_fonts(font_manager)  # installed after matplotlib cached its font list
    log.warning("no CJK font found (reinstall medmill: its pylopdf-fonts-zh-cn dependency is missing); "
                "Chinese labels in plots will show as boxes")
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


@contextmanager
def _cjk_text(font: str | None):
    """Every text of the figure (ticks, legend too) in the CJK font with DejaVu Sans as fallback;
    missing-glyph warnings (no CJK font anywhere) are counted and said once, not once per glyph."""
    from matplotlib import rc_context

    with rc_context({"font.family": [font, "DejaVu Sans"]} if font else {}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = [w for w in caught if "missing from font" in str(w.message)]
    for w in caught:
        if w not in missing:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        log.warning("%d characters of a plot have no glyph in the available fonts (drawn as boxes)", len(missing))


def length_histogram(stats: DatasetStats, out: Path) -> bool:
    """Overlaid character-length histograms of each field (prompt / answer, chosen / rejected, text)."""
    series = [(name, d) for name, d in stats.chars.items() if d.count]
    if not series:
        return False
    fig, font = _figure(7, 3.2)
    with _cjk_text(font):
        _draw_histogram(fig, font, series)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", metadata={"Software": None})
    return True


def _draw_histogram(fig, font: str | None, series: list) -> None:
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, dist) in enumerate(series):
        counts, edges = dist.histogram(bins=30)
        ax.stairs(counts, edges, label=f"{name} (median {dist.quantile(0.5)})", color=COLORS[i % len(COLORS)], linewidth=1.6)
    ax.set_xlabel("characters (clipped at p99)", **_font_kw(font))
    ax.set_ylabel("records", **_font_kw(font))
    ax.set_title("Length distribution", y=1.0, **_font_kw(font))  # y given: see _draw_bars
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.16)  # fixed: a tight layout costs 2x


def category_bars(key: str, counter: Counter, out: Path, top: int = 20) -> bool:
    """Horizontal bars of the `top` most frequent values of one meta key."""
    items = counter.most_common(top)
    if not items:
        return False
    fig, font = _figure(7, 0.8 + 0.28 * len(items))
    with _cjk_text(font):
        _draw_bars(fig, font, key, counter, items, top)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", metadata={"Software": None})
    return True


def _draw_bars(fig, font: str | None, key: str, counter: Counter, items: list, top: int) -> None:
    ax = fig.add_subplot(1, 1, 1)
    labels = [str(k) for k, _ in reversed(items)]
    ax.barh(range(len(items)), [v for _, v in reversed(items)], color=COLORS[0])
    ax.set_yticks(range(len(items)), labels, **_font_kw(font))
    ax.set_xlabel("records", **_font_kw(font))
    # y given: matplotlib then skips placing the title clear of every tick label, which measures all of them
    # on each draw (~5% of a plot); nothing sits above the axes here, so the title lands where it would anyway
    ax.set_title(f"meta.{key}" + (f" (top {top} of {len(counter)})" if len(counter) > top else ""), y=1.0,
                 **_font_kw(font))
    ax.spines[["top", "right"]].set_visible(False)
    # room for the longest label (CJK glyphs are about one font size wide); fixed margins, no tight layout
    widest = max(sum(2 if ord(c) > 0x2E80 else 1 for c in label) for label in labels)
    height_in = fig.get_figheight()
    fig.subplots_adjust(left=min(0.5, 0.04 + 0.0105 * widest), right=0.97, top=1 - 0.35 / height_in, bottom=0.5 / height_in)


def plot_plan(stats: DatasetStats, max_category_plots: int = 3) -> list[tuple[str, str, Callable[[Path], bool]]]:
    """The card's plots for these statistics: (title, path relative to the dataset dir, draw(path))."""
    plan: list[tuple[str, str, Callable[[Path], bool]]] = []
    if any(d.count for d in stats.chars.values()):
        plan.append(("Length distribution (characters)", f"{PLOTS_DIR}/length_hist.png", partial(length_histogram, stats)))
    for key, counter in list(stats.categories.items())[:max_category_plots]:
        if len(counter) >= 2:
            plan.append((f"meta.{key}", f"{PLOTS_DIR}/meta_{_slug(key)}.png", partial(category_bars, key, counter)))
    return plan


def write_plots(stats: DatasetStats, out_dir: Path, max_category_plots: int = 3) -> list[tuple[str, str]]:
    """Write the card's plots into `out_dir/plots/`; return (title, path relative to out_dir)."""
    return [(title, rel) for title, rel, draw in plot_plan(stats, max_category_plots) if draw(out_dir / rel)]


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
