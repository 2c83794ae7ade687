"""A benchmark threshold and the line that prints it beside its measured figure."""

from __future__ import annotations

import math
from dataclasses import dataclass

PASS = "pass"
MISS = "MISS"


@dataclass(frozen=True)
class Threshold:
    """``what`` must be at most (``at_most``) or at least ``limit``, in ``unit``.

    ``fmt`` formats both the limit and the measured figure (``"{:.2%}"`` for shares)."""

    what: str
    limit: float
    unit: str = ""
    at_most: bool = True
    fmt: str = "{:,.2f}"

    def passed(self, measured: float | None) -> bool:
        """Whether ``measured`` meets the threshold (a missing or NaN figure does not)."""
        if measured is None or math.isnan(measured):
            return False
        return measured <= self.limit if self.at_most else measured >= self.limit

    def line(self, measured: float | None, note: str = "") -> str:
        """``target <what>: <op> <limit>  measured <figure>  pass|MISS``."""
        unit = f" {self.unit}" if self.unit else ""
        op = "<=" if self.at_most else ">="
        got = (
            "not measured"
            if measured is None or math.isnan(measured)
            else self.fmt.format(measured) + unit
        )
        mark = PASS if self.passed(measured) else MISS
        tail = f" ({note})" if note else ""
        return (
            f"  target {self.what}: {op} {self.fmt.format(self.limit)}{unit}"
            f"  measured {got}  {mark}{tail}"
        )
