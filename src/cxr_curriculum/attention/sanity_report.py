"""The result of the cascading-randomisation sanity check, with its text summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .report_io import json_safe, write_csv, write_json

__all__ = ["SanityReport"]


@dataclass
class SanityReport:
    """Result of the cascading-randomisation sanity check (Adebayo et al. 2018).

    Attributes:
        rows: One dict per step: ``step`` (0 = trained model), ``layer`` (the last layer
            randomised), ``n_randomised``, ``spearman`` (mean rank correlation of the maps
            with the trained model's), ``spearman_low``/``spearman_high`` (bootstrap CI),
            ``energy_in_mask`` with its CI.
        meta: Method and settings.
    """

    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return json_safe({"meta": self.meta, "rows": self.rows})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as strict JSON."""
        write_json(path, self.to_dict())

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one CSV line per randomisation step."""
        write_csv(path, self.rows)

    def summary(self) -> str:
        """Text table of the cascade: Spearman with the trained maps and lung energy.

        A method that explains the model shows the correlation falling towards 0 as
        layers are randomised; maps that stay correlated after the whole network is
        randomised show image structure rather than the model (Adebayo et al. 2018).
        """
        lines = [
            f"sanity check (cascading randomisation) of {self.meta.get('method', '?')} on "
            f"{self.meta.get('n_images', '?')} images, {self.meta.get('n_layers', '?')} layers",
            f"  {'step':>4}  {'randomised':>10}  {'spearman [CI]':<24}  "
            f"{'energy in lungs [CI]':<24}  last layer randomised",
        ]
        for r in self.rows:
            rho = f"{r['spearman']:.3f} [{r['spearman_low']:.3f}, {r['spearman_high']:.3f}]"
            energy = f"{r['energy_in_mask']:.3f} [{r['energy_low']:.3f}, {r['energy_high']:.3f}]"
            lines.append(
                f"  {r['step']:>4}  {r['n_randomised']:>10}  {rho:<24}  {energy:<24}  {r['layer']}"
            )
        if len(self.rows) > 1:
            last = self.rows[-1]
            everything = last["n_randomised"] == self.meta.get("n_layers")
            when = "fully randomised" if everything else f"{last['n_randomised']} layers randomised"
            lines.append(
                f"  {when}: spearman {last['spearman']:.3f} (1 = maps unchanged, "
                f"0 = unrelated), energy {last['energy_in_mask']:.3f} vs trained "
                f"{self.rows[0]['energy_in_mask']:.3f}"
            )
        return "\n".join(lines)
