"""The report's data: one :class:`ReportData` (records, counts, provenance) that every writer reads."""

from __future__ import annotations

import collections
import dataclasses
import math
import platform
import time
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import BilstmRefError
from ..suites.harness import SCHEMA_VERSION, record_of

#: Every status a record can have, in report order (problems first).
STATUSES = ("fail", "error", "integrity", "xpass", "xfail", "known-deviation", "pass")
FAILING = ("fail", "error", "integrity")
#: Flags shown as rows of the flag x output table and heatmap.
TABLE_FLAGS = ("family", "merge_mode", "return_sequences", "return_state", "mask", "initial_state", "stateful",
               "go_backwards", "zero_output_for_mask", "backward", "activation", "recurrent_activation", "use_bias",
               "unroll", "dropout", "dtype_policy", "batch", "time", "units")


def _finite(x: Any) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclasses.dataclass
class ReportData:
    """What every report format shows."""

    records: list[dict[str, Any]]
    meta: dict[str, Any]

    @classmethod
    def build(cls, results: Sequence[Any], *, versions: dict[str, str], wall: float, source: str,
              impl: Optional[str], backend: Optional[str], tolerance: Any = None,
              expected_failures: Sequence[Any] = (), argv: Sequence[str] = ()) -> "ReportData":
        if not results:
            raise BilstmRefError("no case was executed: refusing to write a report of nothing")
        from .._version import __version__

        records = [record_of(r) for r in results]
        order = {s: i for i, s in enumerate(STATUSES)}
        records.sort(key=lambda r: (order.get(r["status"], -1), r["id"]))
        meta = {
            "schema_version": SCHEMA_VERSION,
            "kind": "bilstm_ref.report",
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bilstm_ref": __version__,
            "source": source,
            "implementation": impl or "bilstm_ref:reference_factory (the reference)",
            "backend": backend,
            "versions": dict(versions),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "tolerance": tolerance.as_dict() if tolerance is not None else "per-dtype defaults "
                         "(bilstm_ref.conformance.compare.TOLERANCES)",
            "expected_failures": [dataclasses.asdict(x) for x in expected_failures],
            "argv": list(argv),
            "wall_seconds": round(wall, 3),
        }
        data = cls(records, meta)
        meta["counts"] = data.counts()
        meta["coverage"] = data.coverage()
        return data

    def counts(self) -> dict[str, int]:
        c = collections.Counter(r["status"] for r in self.records)
        return {"total": len(self.records), **{s: c.get(s, 0) for s in STATUSES}}

    def coverage(self) -> float:
        """Share of all cases whose answers match Keras (passes, known deviations, unexpected passes)."""
        c = self.counts()
        return (c["pass"] + c["known-deviation"] + c["xpass"]) / max(c["total"], 1)

    @property
    def failed(self) -> bool:
        return any(r["status"] in FAILING for r in self.records)

    def worst(self) -> dict[tuple[str, str], float]:
        """Worst max |diff| per (dtype policy, output) over matching cases."""
        out: dict[tuple[str, str], float] = collections.defaultdict(float)
        for r in self.records:
            if r["status"] not in ("pass", "xpass"):
                continue
            pol = str(r["flags"].get("dtype_policy", "float32"))
            for o in r["outputs"]:
                name = o["name"].rsplit("/", 1)[-1]
                if o["max_abs"] is not None:
                    out[(pol, name)] = max(out[(pol, name)], o["max_abs"])
        return dict(out)

    def flag_table(self, metric: str = "max_abs"
                   ) -> tuple[list[str], list[tuple[str, str, dict[str, Optional[float]], dict[str, int]]]]:
        """(outputs, rows): per flag=value, the worst error per output over matching cases, and the
        status counts of all its cases."""
        outputs = sorted({o["name"].rsplit("/", 1)[-1] for r in self.records for o in r["outputs"]},
                         key=lambda n: (not n.startswith("output"), n))
        rows = []
        for flag in TABLE_FLAGS:
            values = sorted({str(r["flags"][flag]) for r in self.records if flag in r["flags"]})
            if len(values) < 2:
                continue
            for value in values:
                group = [r for r in self.records if str(r["flags"].get(flag)) == value]
                worst: dict[str, Optional[float]] = {}
                matching = [r for r in group if r["status"] in ("pass", "xpass")]
                for name in outputs:  # errors of cases that match (deviations and failures are listed apart)
                    errs = [o[metric] for r in matching for o in r["outputs"]
                            if o["name"].rsplit("/", 1)[-1] == name and o.get(metric) is not None]
                    worst[name] = max(errs) if errs else None
                counts = collections.Counter(r["status"] for r in group)
                rows.append((flag, value, worst, dict(counts)))
        return outputs, rows

    def as_json(self) -> dict[str, Any]:
        return {**self.meta, "cases": self.records}


def fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2e}"
