"""What a run prints before training: a decoded example with the loss mask visible, token-length
statistics, and how many examples length limits truncate or drop (counted on tokens, not characters)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(soft_wrap=True)


@dataclass
class LengthReport:
    examples: int
    limit: int | None
    min: int
    mean: float
    p50: int
    p90: int
    p99: int
    max: int
    truncated: int = 0
    dropped: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def length_report(lengths: list[int], limit: int | None, truncated: int = 0, dropped: int = 0) -> LengthReport:
    ordered = sorted(lengths) or [0]

    def pct(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return LengthReport(
        examples=len(lengths),
        limit=limit,
        min=ordered[0],
        mean=round(sum(ordered) / len(ordered), 1),
        p50=pct(0.5),
        p90=pct(0.9),
        p99=pct(0.99),
        max=ordered[-1],
        truncated=truncated,
        dropped=dropped,
    )


def masked_text(tokenizer, input_ids: list[int], trained: list[bool]) -> Text:
    """Trained tokens in green, context in grey; ⟦ ⟧ mark trained spans so logs without colour show them too."""
    text = Text()
    start = 0
    for i in range(1, len(input_ids) + 1):
        if i == len(input_ids) or trained[i] != trained[start]:
            piece = tokenizer.decode(input_ids[start:i], skip_special_tokens=False)
            if trained[start]:
                text.append("⟦" + piece + "⟧", style="bold green")
            else:
                text.append(piece, style="grey50")
            start = i
    return text


def show_example(tokenizer, input_ids: list[int], trained: list[bool], title: str) -> None:
    n = sum(trained)
    console.rule(f"{title}: {len(input_ids)} tokens, {n} trained (⟦green⟧ = in the loss)")
    console.print(masked_text(tokenizer, input_ids, trained))
    console.rule()


def show_lengths(report: LengthReport, title: str = "token lengths") -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    for key in ("examples", "min", "mean", "p50", "p90", "p99", "max", "limit", "truncated", "dropped"):
        table.add_column(key, justify="right")
    values = [getattr(report, k) for k in ("examples", "min", "mean", "p50", "p90", "p99", "max", "limit", "truncated", "dropped")]
    table.add_row(*["-" if v is None else str(v) for v in values])
    console.print(table)
