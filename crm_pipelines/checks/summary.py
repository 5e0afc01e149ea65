"""What a run published, quarantined and warned about, as the few lines that end its log.

Pure code: the asset that ends the nightly job (``crm_pipelines.assets.run_summary``) gathers the
facts from the run's events and the warehouse, and this module words them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    tables: dict[str, int] = field(default_factory=dict)
    """Published table (schema.table) -> rows, as each asset reported."""
    quarantined_rows: int = 0
    warned_checks: list[str] = field(default_factory=list)
    """``asset_key:check`` of checks that passed with a warning (or failed without blocking)."""
    report_index: Path | None = None

    def lines(self) -> list[str]:
        by_layer: dict[str, int] = {}
        for table in self.tables:
            layer = table.split(".", 1)[0]
            by_layer[layer] = by_layer.get(layer, 0) + 1
        layers = ", ".join(f"{n} {layer}" for layer, n in by_layer.items())
        count = f"{len(self.tables)} table" + ("" if len(self.tables) == 1 else "s")
        lines = [f"run {self.run_id}: published {count} ({layers or 'none'})"]
        lines += [f"  {table:<48} {rows:>12,} rows" for table, rows in sorted(self.tables.items())]
        lines.append(f"rows quarantined in this run: {self.quarantined_rows:,} (quarantine.rejected_rows)")
        if self.warned_checks:
            lines.append(f"checks that warned ({len(self.warned_checks)}): " + ", ".join(sorted(self.warned_checks)))
        else:
            lines.append("checks that warned: none")
        lines.append(f"validation reports: {self.report_index}" if self.report_index else "validation reports: none")
        return lines

    def to_text(self) -> str:
        return "\n".join(self.lines())

    def to_markdown(self) -> str:
        rows = "\n".join(f"| `{table}` | {rows:,} |" for table, rows in sorted(self.tables.items()))
        warned = ", ".join(f"`{c}`" for c in sorted(self.warned_checks)) or "none"
        return (
            f"**{len(self.tables)} tables published**, {self.quarantined_rows:,} rows quarantined; "
            f"checks that warned: {warned}.\n\n| table | rows |\n|---|---|\n{rows}\n"
        )
