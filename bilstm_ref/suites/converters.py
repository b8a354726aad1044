"""The converter scoreboard: the converter suite of the matrix through each converter and its runtime.

Each case's layer is converted by the real converter (:mod:`bilstm_ref.adapters`), run in its
runtime on the case's calls, and judged against live Keras as any implementation is. A case ends as

* ``pass``: every output within the case's tolerance (``known-deviation``: Keras answers under a
  documented Keras bug and the converted layer computes the documented semantics);
* ``fail``: an output off; ``expected-fail`` when a known converter deviation (data below, with
  its evidence) explains it;
* ``refused``: the converter or the adapter refused the layer (the converter's own message kept);
* ``rejected``: the converter wrote a file its runtime will not load (an op the runtime does not
  implement, or a graph it finds invalid): a converter bug or a gap between converter and runtime;
* ``error``: the runtime raised running the artifact, or Keras itself could not run the case.

Each converter runs in its own worker processes (TensorFlow's graph state grows with every
conversion); conversions are cached on disk (``BILSTM_REF_CACHE``), so a second run is fast.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

__all__ = ["CONVERTERS", "CONVERTER_DEVIATIONS", "ConverterDeviation", "run_converter_scoreboard",
           "render_converters_markdown"]

#: Converter name -> its implementation factory.
CONVERTERS = {
    "onnx": "bilstm_ref.adapters.onnx:factory",
    "tflite": "bilstm_ref.adapters.tflite:factory",
    "openvino": "bilstm_ref.adapters.openvino:factory",
}


@dataclasses.dataclass(frozen=True)
class ConverterDeviation:
    """A converter's documented wrong answer: which cases, why, and the measurement that shows it."""

    converter: str
    name: str
    applies: Callable[[Any], bool]
    reason: str
    evidence: str


#: Known converter deviations (none measured yet: a failing case is a failure until one is documented).
CONVERTER_DEVIATIONS: tuple[ConverterDeviation, ...] = ()

_STATE: dict[str, Any] = {}


def _init(converter: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from ..conformance.oracle import KerasOracle
    from ..reference.spec import resolve_factory

    _STATE.update(converter=converter, oracle=KerasOracle("tensorflow"), factory=resolve_factory(CONVERTERS[converter]))


def _worst(outputs: Sequence[Any]) -> Optional[float]:
    values = [o.max_abs for o in outputs if o.max_abs is not None]
    return max(values) if values else None


def _run_case(case_id: str) -> dict[str, Any]:
    """Worker: one case through the converter, judged against Keras."""
    from ..conformance import matrix
    from ..adapters.base import ConversionError, RuntimeUnavailableError
    from ..errors import CorruptFileError, UnsupportedModelError
    from ..conformance.judge import crash_report, judge

    case = matrix.by_id()[case_id]
    oracle, factory, converter = _STATE["oracle"], _STATE["factory"], _STATE["converter"]
    rec: dict[str, Any] = {"id": case_id, "op_form": None, "message": "", "failing": [], "worst": None}
    t0 = time.perf_counter()
    try:
        keras_outputs = oracle.run(case)
    except Exception as exc:
        rec.update(status="error", message=f"Keras raised {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return rec
    made: list[Any] = []

    def capturing(spec: Any) -> Any:
        impl = factory(spec)
        made.append(impl)
        return impl

    try:
        result = judge(case, keras_outputs, oracle.backend, factory=capturing)
    except RuntimeUnavailableError:
        raise
    except ConversionError as exc:
        rec.update(status="refused", message=exc.message)
    except UnsupportedModelError as exc:
        # raised by the factory: the adapter refuses the layer; after it: the runtime will not load the file
        rec.update(status="rejected" if made else "refused", message=_clean(str(exc)))
    except CorruptFileError as exc:
        rec.update(status="rejected", message=_clean(str(exc)))
    except Exception as exc:
        rec.update(status="error", message=_clean(crash_report(exc, "the converted model raised ")[0]))
    else:
        rec.update(status=result.status,  # known-deviation: Keras is under a documented bug, the converter is not
                   failing=[o.name for o in result.failures], worst=_worst(result.outputs),
                   message=result.message)
        if rec["status"] == "fail":
            for dev in CONVERTER_DEVIATIONS:
                if dev.converter == converter and dev.applies(case):
                    rec.update(status="expected-fail", deviation=dev.name, message=dev.reason)
                    break
    if made:
        rec["op_form"] = made[0].op_form
        rec["op_forms"] = sorted(set(made[0].op_forms.values()))
    rec["wall"] = round(time.perf_counter() - t0, 2)
    return rec


_PATH = re.compile(r"(?<![\w.:])(?:[A-Za-z]:)?(?:[\\/][\w.@+-]+)+[\\/]([\w.@+-]+)")  # absolute paths only
_LOCATION = re.compile(r"\s+at \S+:\d+ in \w+$")


def _clean(message: str) -> str:
    """A message fit for a shared report: files by their name only (no cache or install folders), no
    source location, and one converted file's hash not telling identical causes apart."""
    text = _LOCATION.sub("", " ".join(message.split()))
    text = _PATH.sub(lambda m: m.group(1), text)
    text = re.sub(r"\b(onnx|tflite|openvino)-[0-9a-f]{40}\.(onnx|tflite|xml)", r"the converted .\2", text)
    return re.sub(r"(?<=[A-Za-z])(?:_\d+)+(?=[/:'\"),])", "", text)  # Keras's layer numbering: functional_12_1/lstm_3


def _versions(converter: str) -> dict[str, str]:
    from ..adapters.base import package_version

    dists = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "tflite": ("ai-edge-litert",),
             "openvino": ("tf2onnx", "openvino")}[converter]
    return {d: package_version(d) for d in ("keras", "tensorflow", *dists)}


def _installed(converter: str) -> Optional[str]:
    """Why the converter cannot run here, or None."""
    import importlib.util

    from ..adapters.base import INSTALL_HINT

    need = {"onnx": ("keras", "tf2onnx", "onnxruntime"), "tflite": ("keras", "tensorflow", "ai_edge_litert"),
            "openvino": ("keras", "tf2onnx", "openvino")}[converter]
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    hint = 'pip install "bilstm_ref[openvino]"' if "openvino" in missing else INSTALL_HINT
    return f"{', '.join(missing)} not installed: {hint}"


def run_converter_scoreboard(out_dir: str, converters: Sequence[str], patterns: Optional[Sequence[str]] = None,
                             jobs: int = 2, progress: Optional[Callable[[str, int, int], None]] = None
                             ) -> dict[str, Any]:
    """Run :func:`~bilstm_ref.conformance.matrix.converter_suite` through each converter; write ``converters.json``
    and ``converters.md`` into ``out_dir``; return the board."""
    from ..conformance import matrix

    cases = matrix.select(list(matrix.converter_suite()), list(patterns or []))
    runs: dict[str, Any] = {}
    for converter in converters:
        why = _installed(converter)
        if why:
            runs[converter] = {"status": "not installed", "reason": why}
            continue
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        records: list[dict[str, Any]] = []
        with ctx.Pool(max(1, min(jobs, len(cases))), initializer=_init, initargs=(converter,),
                      maxtasksperchild=20) as pool:
            for rec in pool.imap(_run_case, [c.id for c in cases]):
                records.append(rec)
                if progress:
                    progress(converter, len(records), len(cases))
        runs[converter] = {"status": "ran", "wall": round(time.perf_counter() - t0, 1),
                           "versions": _versions(converter), "cases": records}
    board = _combine(runs, len(cases))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "converters.json").write_text(json.dumps(board, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "converters.md").write_text(render_converters_markdown(board), encoding="utf-8")
    return board


def _policy_of(case_id: str) -> str:
    from ..conformance import matrix

    return str(matrix.by_id()[case_id].tolerance_policy)


def _combine(runs: dict[str, Any], n_cases: int) -> dict[str, Any]:
    summary = {}
    for converter, run in runs.items():
        if run["status"] != "ran":
            summary[converter] = run
            continue
        recs = run["cases"]
        counts = collections.Counter(r["status"] for r in recs)
        forms = collections.Counter(f for r in recs for f in r.get("op_forms") or [])
        refusals = collections.Counter(r["message"] for r in recs if r["status"] == "refused")
        rejections = collections.Counter(r["message"] for r in recs if r["status"] == "rejected")
        worst: dict[str, float] = {}
        for r in recs:
            if r["status"] == "pass" and r["worst"] is not None:
                policy = _policy_of(r["id"])
                worst[policy] = max(worst.get(policy, 0.0), r["worst"])
        summary[converter] = {
            "status": "ran", "wall": run["wall"], "versions": run["versions"],
            "counts": {k: counts.get(k, 0) for k in ("pass", "known-deviation", "fail", "expected-fail", "refused",
                                                     "rejected", "error")},
            "op_forms": dict(forms), "refusals": dict(refusals.most_common()),
            "rejections": dict(rejections.most_common()), "worst_by_policy": worst, "cases": recs,
        }
    return {"suite": n_cases, "converters": summary}


def render_converters_markdown(board: dict[str, Any]) -> str:
    """The converter scoreboard as Markdown: one row per converter, then refusals, failures and op forms."""
    lines = ["# bilstm_ref converter scoreboard", "",
             f"The converter suite: {board['suite']} matrix cases covering every pair of values of the flags a "
             "converter's answer depends on. Each layer is converted by the real converter, run in its runtime "
             "and judged against live Keras at the case's tolerance.", "",
             "| converter | versions | passed | failed | expected failures | refused at conversion | "
             "rejected by the runtime | errors | op forms emitted | worst passing error (float32) | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in board["converters"].items():
        if s["status"] != "ran":
            lines.append(f"| {name} | {s['status']}: {s['reason']} | - | - | - | - | - | - | - | - | - |")
            continue
        c = s["counts"]
        vers = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
        forms = ", ".join(f"{f} ({n})" for f, n in sorted(s["op_forms"].items())) or "-"
        worst = s["worst_by_policy"].get("float32")
        worst_text = "-" if worst is None else f"{worst:.2g}"
        lines.append(f"| {name} | {vers} | {c['pass']} | {c['fail']} | {c['expected-fail']} | {c['refused']} | "
                     f"{c['rejected']} | {c['error']} | {forms} | {worst_text} | {s['wall']} |")
    for name, s in board["converters"].items():
        if s["status"] != "ran":
            continue
        for key, title, who in (("refusals", "refused at conversion", "the converter's message"),
                                ("rejections", "converted, but rejected by the runtime", "the runtime's message")):
            if s[key]:
                lines += ["", f"## {name}: {title}", "", f"| cases | {who} |", "|---|---|"]
                lines += [f"| {n} | {m.replace('|', '/')[:400]} |" for m, n in s[key].items()]
        if s["worst_by_policy"]:
            lines += ["", f"{name}, worst error of passing cases by dtype policy: "
                      + ", ".join(f"{p} {v:.2g}" for p, v in sorted(s["worst_by_policy"].items()))]
        bad = [r for r in s["cases"] if r["status"] in ("fail", "expected-fail", "error")]
        if bad:
            lines += ["", f"## {name}: failures and errors", "", "| case | status | op form | outputs off | worst | message |",
                      "|---|---|---|---|---|---|"]
            for r in bad:
                worst = "-" if r["worst"] is None else f"{r['worst']:.2g}"
                lines.append(f"| `{r['id']}` | {r['status']} | {r.get('op_form') or '-'} | {', '.join(r['failing'][:5]) or '-'} | "
                             f"{worst} | {r['message'].replace('|', '/')[:200]} |")
    lines.append("")
    return "\n".join(lines)
