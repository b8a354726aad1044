"""Regression fixtures for any language: one JSON document, or one C99 header.

``export_fixtures(directory, fmt, out)`` reads every fixture of a directory (each one
integrity-checked by :func:`bilstm_ref.fixtures.read_fixture`) and writes them all into one file:

* ``fmt="json"``: ``{"format": "bilstm_ref.fixtures", "version": 1, "fixtures": [...]}``. Every
  array is ``{"dtype", "shape", "data"}`` with ``data`` nested lists of numbers written in the
  shortest form that reads back to the same value of the array's own dtype; non-finite values are
  the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has none), ``-0.0`` stays ``-0.0``.
  :func:`read_exported_json` decodes it back to NumPy arrays, bit for bit.
* ``fmt="c-header"``: a C99 header of ``static const`` data, one ``bfx_fixture`` descriptor per
  fixture in ``bilstm_fixtures[BILSTM_FIXTURE_COUNT]``, every number a C99 hexadecimal float
  literal (exact) or ``NAN`` / ``INFINITY``. It compiles with ``cc -std=c99 -Wall -Werror -pedantic``.
  ``examples/c/`` holds a C99 port of LSTM and Bidirectional(LSTM) and a harness that checks it
  against such a header.

The layout of both is in docs/fixture-export.md. The file is written atomically (a temp file in
the same folder, then ``os.replace``): a failed export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from .errors import BilstmRefError, ConfigError, CorruptFileError, FileAccessError, FixtureIntegrityError

__all__ = [
    "FORMATS", "JSON_FORMAT", "JSON_VERSION", "ExportSummary", "export_fixtures", "export_main",
    "read_exported_json", "json_text", "c_header_text", "c_double",
]

FORMATS = ("json", "c-header")
JSON_FORMAT = "bilstm_ref.fixtures"
JSON_VERSION = 1
#: Version of the C header's struct layout (``BFX_LAYOUT_VERSION`` in the header).
C_LAYOUT_VERSION = 2
TMP_PREFIX = ".bilstm_ref-tmp-"

PathLike = Union[str, "os.PathLike[str]"]

# Names the C header gives activations and dtype policies (enum members are these, upper-cased).
C_ACTIVATIONS = (
    "linear", "tanh", "sigmoid", "hard_sigmoid", "relu", "relu6", "leaky_relu", "softplus", "softsign",
    "elu", "selu", "celu", "exponential", "gelu", "silu", "hard_silu", "mish", "log_sigmoid",
    "tanh_shrink", "hard_tanh", "soft_shrink", "hard_shrink", "squareplus", "sparse_plus", "sparse_sigmoid",
)
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}
C_POLICIES = ("float32", "float64", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")
C_MERGE_MODES = ("none", "concat", "sum", "mul", "ave")


@dataclasses.dataclass
class ExportSummary:
    """What an export wrote: the fixtures exported, and those skipped with the reason."""

    format: str
    out: str
    exported: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (fixture id, reason)
    bytes: int = 0

    @property
    def count(self) -> int:
        return len(self.exported)

    def describe(self) -> str:
        lines = [f"exported {self.count} fixture{'s' * (self.count != 1)} as {self.format} to {self.out} "
                 f"({self.bytes} bytes)"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {fid}: {reason}" for fid, reason in self.skipped]
        return "\n".join(lines)


# --- reading the fixtures -----------------------------------------------------------------------
def _load(directory: PathLike, patterns: Optional[Sequence[str]]) -> tuple[list[Any], list[tuple[str, str]]]:
    from .fixtures import read_fixture, scan
    from .matrix import id_selected

    found = scan(directory)
    fixtures, skipped = [], []
    for problem in found.problems:
        if id_selected(problem.id, patterns):
            skipped.append((problem.id, problem.message))
    for path in found.manifests:
        fid = path.name[: -len(".json")]
        if not id_selected(fid, patterns):
            continue
        try:
            fixtures.append(read_fixture(path))
        except BilstmRefError as e:
            skipped.append((fid, f"{type(e).__name__}: {e}"))
    return fixtures, skipped


# --- JSON ---------------------------------------------------------------------------------------
def _number_texts(a: np.ndarray) -> list[str]:
    """Each element of a float array as JSON text: the shortest decimal that reads back (through a
    Python float, then the array's dtype) to the same value; NaN and infinities as strings."""
    flat = np.ascontiguousarray(a).reshape(-1)
    texts = flat.astype(str).tolist()  # NumPy's shortest round-trip repr in the array's own dtype
    finite = np.isfinite(flat)
    if not finite.all():
        canonical = np.array(np.nan, dtype=flat.dtype).tobytes()
        for i in np.flatnonzero(~finite).tolist():
            v = flat[i]
            if np.isnan(v):
                bits = flat[i : i + 1].tobytes()
                # A NaN's sign and payload are kept when they are not the canonical NaN's.
                texts[i] = '"NaN"' if bits == canonical else f'"NaN:0x{int.from_bytes(bits, "little"):x}"'
            else:
                texts[i] = '"Infinity"' if v > 0 else '"-Infinity"'
    return texts


def _nested(texts: list[str], shape: tuple[int, ...]) -> str:
    if not shape:
        return texts[0]
    if len(shape) == 1:
        return "[" + ",".join(texts) + "]"
    step = math.prod(shape[1:])
    return "[" + ",".join(_nested(texts[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


class _Raw:
    """Pre-rendered JSON text inside a document built from Python values."""

    def __init__(self, text: str) -> None:
        self.text = text


def _json_array(a: np.ndarray, name: Optional[str] = None) -> dict[str, Any]:
    a = np.asarray(a)
    if a.dtype.kind == "b":
        texts = ["true" if v else "false" for v in a.reshape(-1).tolist()]
    elif a.dtype.kind == "f":
        texts = _number_texts(a)
    else:
        raise FixtureIntegrityError(f"array of dtype {a.dtype}: fixtures hold float or bool arrays")
    out: dict[str, Any] = {} if name is None else {"name": name}
    out.update(dtype=a.dtype.name, shape=list(a.shape), data=_Raw(_nested(texts, a.shape)))
    return out


def _weight_names(fixture: Any) -> list[str]:
    def one(prefix: str, use_bias: bool) -> list[str]:
        return [prefix + n for n in ("kernel", "recurrent_kernel") + (("bias",) if use_bias else ())]

    cfg = fixture.spec.config
    if fixture.spec.class_name == "LSTM":
        names = one("", bool(cfg.get("use_bias", True)))
    else:
        fw, bw = _bidi_configs(cfg)
        names = one("forward_", bool(fw.get("use_bias", True))) + one("backward_", bool(bw.get("use_bias", True)))
    if len(names) != len(fixture.spec.weights):
        names = [f"weight{i}" for i in range(len(fixture.spec.weights))]
    return names


#: The per-step arrays a trace export holds, per direction, in processing order, each (B, T, units).
TRACE_KEYS = ("i", "f", "g", "o", "c", "h")


def _traces(fixture: Any) -> list[dict[str, dict[str, np.ndarray]]]:
    """Per call, per direction: the reference's gates, c and h in processing order, and ``order`` (the
    input step read at each processing step), proven equal to the layer's outputs as they are traced."""
    from .diagnose.trace import trace_case

    return [{d.name: {**{k: np.asarray(d.processing_order[k], dtype=np.float64) for k in TRACE_KEYS},
                      "order": np.asarray(d.order, dtype=np.int64)} for d in tr.directions}
            for tr in trace_case(fixture, all_calls=True)]


def _fixture_document(fixture: Any, traces: bool = False) -> dict[str, Any]:
    calls = []
    per_call = _traces(fixture) if traces else [None] * len(fixture.calls)
    for call, tr in zip(fixture.calls, per_call, strict=True):
        extra = {} if tr is None else {"trace": {
            d: {k: (v.tolist() if k == "order" else _json_array(v)) for k, v in arrays.items()}
            for d, arrays in tr.items()}}
        calls.append({**extra,
            "x": _json_array(call.x),
            "mask": None if call.mask is None else _json_array(call.mask),
            "initial_state": None if call.initial_state is None else [_json_array(s) for s in call.initial_state],
            "reset_before": bool(call.reset_before),
            "expected": {name: _json_array(call.expected[name]) for name in fixture.output_names},
        })
    return {
        "id": fixture.id,
        "class_name": fixture.spec.class_name,
        "config": fixture.spec.config,
        "semantics": fixture.spec.semantics,
        "flags": fixture.flags,
        "tolerance": {"atol": fixture.tolerance.atol, "rtol": fixture.tolerance.rtol,
                      "policy": fixture.tolerance_policy},
        "deviation": fixture.deviation,
        "output_names": list(fixture.output_names),
        "weights": [_json_array(w, name) for w, name in zip(fixture.spec.weights, _weight_names(fixture), strict=True)],
        "calls": calls,
        "provenance": fixture.provenance,
    }


def _dump(value: Any, indent: int, depth: int, out: list[str]) -> None:
    """JSON text of ``value`` into ``out``: dicts and lists indented down to the arrays, which stay on one line."""
    if isinstance(value, _Raw):
        out.append(value.text)
    elif isinstance(value, dict) and value:
        if "data" in value and isinstance(value["data"], _Raw) or depth >= 6:
            out.append("{" + ", ".join(json.dumps(str(k)) + ": " + _inline(v) for k, v in value.items()) + "}")
            return
        pad = "\n" + " " * (indent * (depth + 1))
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            out.append(("," if i else "") + pad + json.dumps(str(k)) + ": ")
            _dump(v, indent, depth + 1, out)
        out.append("\n" + " " * (indent * depth) + "}")
    elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        pad = "\n" + " " * (indent * (depth + 1))
        out.append("[")
        for i, v in enumerate(value):
            out.append(("," if i else "") + pad)
            _dump(v, indent, depth + 1, out)
        out.append("\n" + " " * (indent * depth) + "]")
    else:
        out.append(_inline(value))


def _inline(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(json.dumps(str(k)) + ": " + _inline(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FixtureIntegrityError(f"value {value!r} cannot be written as JSON ({e})") from None


def json_text(fixtures: Iterable[Any], traces: bool = False) -> str:
    """The JSON document of ``fixtures`` (:class:`bilstm_ref.fixtures.Fixture` objects); with ``traces``,
    each call also holds the reference's gate trace (:data:`TRACE_KEYS` per direction, processing order)."""
    doc = {"format": JSON_FORMAT, "version": JSON_VERSION,
           "fixtures": [_fixture_document(f, traces) for f in fixtures]}
    out: list[str] = []
    _dump(doc, 1, 0, out)
    return "".join(out) + "\n"


def _decode_number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise CorruptFileError(f"array element {v!r}: expected a number or 'NaN', 'Infinity', '-Infinity'")
    if isinstance(v, str):
        if v == "NaN":
            return math.nan
        if v == "Infinity":
            return math.inf
        if v == "-Infinity":
            return -math.inf
        raise CorruptFileError(f"array element {v!r}: expected a number or 'NaN', 'Infinity', '-Infinity'")
    return float(v)


_NAN_BITS = "NaN:0x"


def _decode_array(obj: Any, where: str) -> np.ndarray:
    if not isinstance(obj, dict) or not {"dtype", "shape", "data"} <= set(obj):
        raise CorruptFileError(f"{where}: expected an array object {{dtype, shape, data}}")
    try:
        dtype = np.dtype(obj["dtype"])
        shape = tuple(int(d) for d in obj["shape"])
    except (TypeError, ValueError) as e:
        raise CorruptFileError(f"{where}: bad dtype or shape ({e})") from None
    if dtype.kind not in "fb":
        raise CorruptFileError(f"{where}: dtype {dtype}: expected a float or bool dtype")
    flat: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, list):
            for u in v:
                walk(u)
        else:
            flat.append(v)

    walk(obj["data"])
    if len(flat) != math.prod(shape):
        raise CorruptFileError(f"{where}: {len(flat)} elements, shape {list(shape)} needs {math.prod(shape)}")
    if dtype.kind == "b":
        if not all(isinstance(v, bool) for v in flat):
            raise CorruptFileError(f"{where}: a bool array holds a non-boolean")
        return np.array(flat, dtype=bool).reshape(shape)
    payloads = {i: v for i, v in enumerate(flat) if isinstance(v, str) and v.startswith(_NAN_BITS)}
    values = [math.nan if i in payloads else _decode_number(v) for i, v in enumerate(flat)]
    with np.errstate(over="ignore"):
        arr = np.array(values, dtype=np.float64).astype(dtype)
    if payloads:
        bits = arr.view(np.dtype(f"<u{dtype.itemsize}"))
        for i, text in payloads.items():
            try:
                bits[i] = int(text[len(_NAN_BITS):], 16)
            except (ValueError, OverflowError):
                raise CorruptFileError(f"{where}: bad NaN bits {text!r}") from None
    return arr.reshape(shape)


def read_exported_json(path: PathLike) -> list[dict[str, Any]]:
    """The fixtures of an exported JSON document, every array decoded to a NumPy array of its dtype.

    Each fixture is the document's dict with: ``weights`` a list of arrays (``get_weights()``
    order) and ``weight_names`` their names; in each call ``x``, ``mask`` (or None),
    ``initial_state`` (None or a list of arrays) and ``expected`` ({name: array}) decoded, and
    ``trace`` ({direction: {key: array, "order": int array}}) when exported with traces.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FileAccessError(f"{str(path)!r}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise CorruptFileError(f"{str(path)!r}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise CorruptFileError(f"{str(path)!r}: not a {JSON_FORMAT} document")
    if doc.get("version") != JSON_VERSION:
        raise CorruptFileError(f"{str(path)!r}: version {doc.get('version')!r}, this bilstm_ref reads {JSON_VERSION}")
    out = []
    for k, f in enumerate(doc.get("fixtures", [])):
        where = f"{str(path)!r} fixture {f.get('id', k)!r}" if isinstance(f, dict) else f"{str(path)!r} fixture {k}"
        try:
            fx = dict(f)
            fx["weight_names"] = [w["name"] for w in f["weights"]]
            fx["weights"] = [_decode_array(w, f"{where} weight {i}") for i, w in enumerate(f["weights"])]
            calls = []
            for j, c in enumerate(f["calls"]):
                cw = f"{where} call {j}"
                calls.append({
                    "x": _decode_array(c["x"], cw + " x"),
                    "mask": None if c["mask"] is None else _decode_array(c["mask"], cw + " mask"),
                    "initial_state": None if c["initial_state"] is None else [
                        _decode_array(s, f"{cw} initial_state {i}") for i, s in enumerate(c["initial_state"])],
                    "reset_before": bool(c["reset_before"]),
                    "expected": {name: _decode_array(a, f"{cw} expected {name!r}") for name, a in c["expected"].items()},
                })
                if "trace" in c:  # exported with --trace
                    calls[-1]["trace"] = {d: {k: (np.asarray(v, dtype=np.int64) if k == "order"
                                                  else _decode_array(v, f"{cw} trace {d} {k}")) for k, v in arrays.items()}
                                          for d, arrays in c["trace"].items()}
            fx["calls"] = calls
        except (KeyError, TypeError, AttributeError) as e:
            raise CorruptFileError(f"{where}: malformed ({type(e).__name__}: {e})") from None
        out.append(fx)
    return out


# --- C header -----------------------------------------------------------------------------------
def c_double(v: float) -> str:
    """An exact C99 literal of ``v``: a hexadecimal float (``-0x1.8p-1``), ``NAN`` or ``(-INFINITY)``."""
    v = float(v)
    if v != v:
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    mant, exp = v.hex().split("p")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}p{exp}"


def _c_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127 and ch != "?":  # '?' would start a trigraph
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def _c_comment(s: str) -> str:
    return s.replace("*/", "* /").replace("/*", "/ *").replace("\n", " ")


def _bidi_configs(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from .bidirectional import _layer_config

    fw = _layer_config(cfg.get("layer"), "layer")
    if cfg.get("backward_layer") is not None:
        bw = _layer_config(cfg["backward_layer"], "backward_layer")
    else:  # Keras derives it: a copy with go_backwards negated
        bw = dict(fw)
        bw["go_backwards"] = not bool(fw.get("go_backwards", False))
    return fw, bw


def _activation(spec: Any) -> tuple[str, str]:
    """(C enum member, the name) of an activation in a config."""
    from .activations import canonical_name

    try:
        name = canonical_name(spec)
    except BilstmRefError:
        return "BFX_ACT_UNKNOWN", str(spec)
    name = _ALIASES.get(name, name)
    return (f"BFX_ACT_{name.upper()}" if name in C_ACTIVATIONS else "BFX_ACT_UNKNOWN"), name


def _policy(spec: Any) -> tuple[str, str]:
    from .dtypes import policy_name

    try:
        name = policy_name(spec)
    except BilstmRefError:
        return "BFX_POLICY_UNKNOWN", str(spec)
    return f"BFX_POLICY_{name.upper()}", name


class _CWriter:
    """Accumulates the header's text: data arrays first, then each fixture's descriptor."""

    PER_LINE = 4

    def __init__(self) -> None:
        self.parts: list[str] = []

    def doubles(self, name: str, a: np.ndarray, comment: str) -> str:
        """A ``static const double`` array of ``a`` (row-major); returns the name, or NULL for an empty one."""
        flat = np.asarray(a, dtype=np.float64).reshape(-1).tolist()  # exact: f2/f4 values are doubles too
        if not flat:
            return "NULL"
        lits = [c_double(v) for v in flat]
        rows = [", ".join(lits[i:i + self.PER_LINE]) for i in range(0, len(lits), self.PER_LINE)]
        self.parts.append(f"/* {_c_comment(comment)} */\nstatic const double {name}[{len(flat)}] = {{\n  "
                          + ",\n  ".join(rows) + "\n};\n")
        return name

    def bytes_(self, name: str, a: np.ndarray, comment: str) -> str:
        flat = np.asarray(a, dtype=np.uint8).reshape(-1).tolist()
        if not flat:
            return "NULL"
        rows = [",".join(str(v) for v in flat[i:i + 32]) for i in range(0, len(flat), 32)]
        self.parts.append(f"/* {_c_comment(comment)} */\nstatic const unsigned char {name}[{len(flat)}] = {{\n  "
                          + ",\n  ".join(rows) + "\n};\n")
        return name

    def raw(self, text: str) -> None:
        self.parts.append(text)


_C_PRELUDE = r"""/* Keras LSTM / Bidirectional(LSTM) regression fixtures, exported by bilstm_ref.fixture_export.
 * Generated: do not edit. Layout: docs/fixture-export.md (bilstm_ref).
 *
 * Every number is an exact C99 hexadecimal float literal (or NAN / INFINITY from math.h), stored
 * as double whatever the recorded dtype (float16 and float32 values are exact doubles); the
 * recorded dtype is kept as a string. Arrays are row-major (C order).
 *
 * Include this header in one translation unit that uses bilstm_fixtures (its data is static).
 */
#ifndef BILSTM_REF_FIXTURES_H
#define BILSTM_REF_FIXTURES_H

#include <math.h>   /* NAN, INFINITY */
#include <stddef.h> /* NULL */

#ifndef BILSTM_REF_FIXTURE_TYPES
#define BILSTM_REF_FIXTURE_TYPES
#define BFX_LAYOUT_VERSION @LAYOUT@

typedef enum { BFX_LSTM = 0, BFX_BIDIRECTIONAL = 1 } bfx_class;

/* merge_mode of a Bidirectional; BFX_MERGE_NONE is merge_mode=None (two outputs). */
typedef enum { BFX_MERGE_NONE = 0, BFX_MERGE_CONCAT, BFX_MERGE_SUM, BFX_MERGE_MUL, BFX_MERGE_AVE } bfx_merge;

/* Element-wise Keras activations (swish and hard_swish are exported as silu and hard_silu).
 * BFX_ACT_UNKNOWN: a name this layout has no member for (see the *_name string). */
typedef enum {
  BFX_ACT_UNKNOWN = 0,
@ACTS@
} bfx_activation;

/* Keras dtype policies. Half-precision ones return outputs rounded to float16 / bfloat16. */
typedef enum {
  BFX_POLICY_UNKNOWN = 0,
@POLICIES@
} bfx_policy;

typedef struct {
  const char *name;   /* e.g. "forward_kernel" */
  const char *dtype;  /* recorded dtype: "float16", "float32", "float64" */
  int ndim;
  int shape[2];
  const double *data;
} bfx_array;

/* One direction (or the LSTM itself), as Keras runs it. */
typedef struct {
  const char *name;                    /* the layer's name in the config */
  int units;
  int input_dim;
  bfx_activation activation;           /* applied to the candidate and to c_t */
  bfx_activation recurrent_activation; /* applied to the gates i, f, o */
  const char *activation_name;
  const char *recurrent_activation_name;
  int use_bias;
  int return_sequences;
  int return_state;
  int go_backwards;
  int stateful;
  int zero_output_for_mask;            /* as run: Bidirectional forces it to return_sequences */
  int unroll;                          /* no effect at inference (but see known deviations) */
  bfx_policy policy;
  const char *policy_name;
  const double *kernel;                /* (input_dim, 4 * units), gates i, f, c, o */
  const double *recurrent_kernel;      /* (units, 4 * units) */
  const double *bias;                  /* (4 * units), or NULL without use_bias */
} bfx_lstm;

typedef struct {
  const char *name;   /* output name: output, h, c; output / output_fw, output_bw, h1, c1, h2, c2 */
  const char *dtype;  /* recorded dtype */
  int ndim;           /* 2: (batch, features) or 3: (batch, time, features) */
  int shape[3];
  const double *data; /* Keras's answer */
} bfx_output;

/* A direction's gate trace of one call (fixtures export --trace), in processing order: step k read
 * input time step order[k]; every array is (batch, time, units). */
typedef struct {
  const char *direction;               /* "forward" or "backward" */
  const int *order;                    /* (time) */
  const double *i, *f, *g, *o, *c, *h;
} bfx_trace;

typedef struct {
  int reset_before;                    /* reset_state() before this call */
  const double *x;                     /* (batch, time, input_dim) */
  const unsigned char *mask;           /* (batch, time), 1 = valid step; NULL: no mask */
  int n_initial_state;                 /* 0, 2 (h, c) or 4 (h_fw, c_fw, h_bw, c_bw) */
  const double *const *initial_state;  /* each (batch, units of its direction); NULL if none */
  const bfx_output *expected;          /* n_outputs, in output_names order */
  int n_traces;                        /* 0, or one per direction (exported with --trace) */
  const bfx_trace *traces;             /* NULL without --trace */
} bfx_call;

typedef struct {
  const char *id;
  bfx_class class_id;
  const char *class_name;              /* "LSTM" or "Bidirectional" */
  const char *semantics;               /* "keras3" or "keras2" */
  int keras2_hard_sigmoid;             /* 1: hard_sigmoid is clip(0.2x + 0.5, 0, 1) (Keras 2) */
  int batch, time, input_dim;          /* every call's x is (batch, time, input_dim) */
  bfx_merge merge_mode;                /* Bidirectional only */
  const char *merge_mode_name;         /* "concat", "sum", "mul", "ave", "none" */
  bfx_policy policy;                   /* the layer's (LSTM) or the wrapper's (Bidirectional) */
  const char *policy_name;
  bfx_lstm forward;                    /* the LSTM, or the forward direction */
  bfx_lstm backward;                   /* the backward direction; units 0 for an LSTM */
  int n_weights;
  const bfx_array *weights;            /* get_weights() order */
  int n_outputs;
  const char *const *output_names;
  int n_calls;
  const bfx_call *calls;
  double atol, rtol;                   /* pass iff |actual - expected| <= atol + rtol * |expected| */
  const char *tolerance_policy;
  const char *deviation;               /* NULL, or the known Keras deviation recorded */
  const char *deviation_quirk;         /* NULL, or the bilstm_ref quirk reproducing it */
} bfx_fixture;
#endif /* BILSTM_REF_FIXTURE_TYPES */

"""


def _c_lstm(w: _CWriter, prefix: str, cfg: dict[str, Any], weights: Sequence[np.ndarray], zofm: bool
           ) -> tuple[str, list[str]]:
    """(the ``bfx_lstm`` initializer of one direction, the names of its weight arrays)."""
    act, act_name = _activation(cfg.get("activation", "tanh"))
    ract, ract_name = _activation(cfg.get("recurrent_activation", "sigmoid"))
    pol, pol_name = _policy(cfg.get("dtype"))
    use_bias = bool(cfg.get("use_bias", True))
    if len(weights) != 2 + use_bias:
        raise FixtureIntegrityError(f"{prefix}: {len(weights)} weights for use_bias={use_bias}")
    labels = [("k", "kernel"), ("r", "recurrent_kernel"), ("b", "bias")][:len(weights)]
    ptrs = [w.doubles(f"{prefix}_{short}", a, f"{prefix} {long} {list(a.shape)}")
            for (short, long), a in zip(labels, weights, strict=True)]

    def flag(key: str) -> str:
        return str(int(bool(cfg.get(key, False))))

    fields = [
        _c_string(str(cfg.get("name", ""))), str(int(cfg["units"])), str(np.shape(weights[0])[0]), act, ract,
        _c_string(act_name), _c_string(ract_name), str(int(use_bias)), flag("return_sequences"),
        flag("return_state"), flag("go_backwards"), flag("stateful"), str(int(zofm)),
        flag("unroll"), pol, _c_string(pol_name), *(ptrs + ["NULL"] * (3 - len(ptrs))),
    ]
    return "{" + ", ".join(fields) + "}", ptrs


_C_EMPTY_LSTM = ('{"", 0, 0, BFX_ACT_UNKNOWN, BFX_ACT_UNKNOWN, "", "", 0, 0, 0, 0, 0, 0, 0, '
                 'BFX_POLICY_UNKNOWN, "", NULL, NULL, NULL}')


def _c_fixture(w: _CWriter, index: int, fixture: Any, traces: bool = False) -> str:
    p = f"bfx{index}"
    per_call = _traces(fixture) if traces else None
    spec = fixture.spec
    cfg = spec.config
    weights = [np.asarray(a) for a in spec.weights]
    w.raw(f"\n/* ---- fixture {index}: {_c_comment(fixture.id)} ---- */\n")
    if spec.class_name == "LSTM":
        class_id, merge = "BFX_LSTM", ("BFX_MERGE_NONE", "none")
        forward, ptrs = _c_lstm(w, f"{p}_f", cfg, weights, bool(cfg.get("zero_output_for_mask", False)))
        backward = _C_EMPTY_LSTM
    elif spec.class_name == "Bidirectional":
        class_id = "BFX_BIDIRECTIONAL"
        fw, bw = _bidi_configs(cfg)
        mode = cfg.get("merge_mode", "concat")
        mode = "none" if mode is None else str(mode)
        if mode not in C_MERGE_MODES:
            raise ConfigError(f"fixture {fixture.id}: merge_mode {mode!r}: expected one of {C_MERGE_MODES}")
        merge = (f"BFX_MERGE_{mode.upper()}", mode)
        nf = 3 if fw.get("use_bias", True) else 2
        zofm = bool(fw.get("return_sequences", False))  # Keras's Bidirectional sets both to return_sequences
        forward, ptrs = _c_lstm(w, f"{p}_f", fw, weights[:nf], zofm)
        backward, more = _c_lstm(w, f"{p}_b", bw, weights[nf:], zofm)
        ptrs += more
    else:
        raise ConfigError(f"fixture {fixture.id}: class {spec.class_name!r}: expected LSTM or Bidirectional")
    policy = _policy(cfg.get("dtype"))
    weight_rows = []
    for a, name, data in zip(weights, _weight_names(fixture), ptrs, strict=True):
        shape = list(a.shape) + [0] * (2 - a.ndim)
        weight_rows.append(f"  {{{_c_string(name)}, {_c_string(a.dtype.name)}, {a.ndim}, {{{shape[0]}, {shape[1]}}}, "
                           f"{data}}}")
    w.raw(f"static const bfx_array {p}_weights[{len(weights)}] = {{\n" + ",\n".join(weight_rows) + "\n};\n")
    calls = fixture.calls
    B, T, D = np.asarray(calls[0].x).shape
    x = w.doubles(f"{p}_x", np.stack([np.asarray(c.x) for c in calls]), f"{p} x of every call [{len(calls)}, {B}, {T}, {D}]")
    mask = None
    if calls[0].mask is not None:
        mask = w.bytes_(f"{p}_m", np.stack([np.asarray(c.mask, dtype=bool) for c in calls]),
                        f"{p} mask of every call [{len(calls)}, {B}, {T}]")
    outs = []
    for j, name in enumerate(fixture.output_names):
        stacked = np.stack([np.asarray(c.expected[name]) for c in calls])
        outs.append((w.doubles(f"{p}_o{j}", stacked, f"{p} expected {name} of every call {list(stacked.shape)}"),
                     stacked.shape[1:], calls[0].expected[name].dtype.name))
    names = ", ".join(_c_string(n) for n in fixture.output_names)
    w.raw(f"static const char *const {p}_names[{len(fixture.output_names)}] = {{{names}}};\n")
    call_rows = []
    for k, call in enumerate(calls):
        init, n_init = "NULL", 0
        if call.initial_state is not None:
            n_init = len(call.initial_state)
            ptrs = [w.doubles(f"{p}_c{k}_s{j}", s, f"{p} call {k} initial state {j} {list(np.shape(s))}")
                    for j, s in enumerate(call.initial_state)]
            w.raw(f"static const double *const {p}_c{k}_init[{n_init}] = {{{', '.join(ptrs)}}};\n")
            init = f"{p}_c{k}_init"
        rows = []
        for (arr, shape, dtype), name in zip(outs, fixture.output_names, strict=True):
            size = math.prod(shape)
            dims = list(shape) + [0] * (3 - len(shape))
            rows.append(f"  {{{_c_string(name)}, {_c_string(dtype)}, {len(shape)}, {{{dims[0]}, {dims[1]}, {dims[2]}}}, "
                        f"{arr} + {k * size}}}")
        w.raw(f"static const bfx_output {p}_c{k}_out[{len(rows)}] = {{\n" + ",\n".join(rows) + "\n};\n")
        m = "NULL" if mask is None else f"{mask} + {k * B * T}"
        n_tr, tr_ptr = 0, "NULL"
        if per_call is not None:
            rows_tr = []
            for d, arrays in per_call[k].items():
                q = f"{p}_c{k}_{d[0]}"
                order = ", ".join(str(int(v)) for v in arrays["order"])
                w.raw(f"static const int {q}_order[{len(arrays['order'])}] = {{{order}}};\n")
                ptrs = [w.doubles(f"{q}_{key}", arrays[key], f"{p} call {k} {d} trace {key} {list(arrays[key].shape)}")
                        for key in TRACE_KEYS]
                rows_tr.append(f"  {{{_c_string(d)}, {q}_order, {', '.join(ptrs)}}}")
            w.raw(f"static const bfx_trace {p}_c{k}_tr[{len(rows_tr)}] = {{\n" + ",\n".join(rows_tr) + "\n};\n")
            n_tr, tr_ptr = len(rows_tr), f"{p}_c{k}_tr"
        call_rows.append(f"  {{{int(bool(call.reset_before))}, {x} + {k * B * T * D}, {m}, {n_init}, {init}, {p}_c{k}_out, "
                         f"{n_tr}, {tr_ptr}}}")
    w.raw(f"static const bfx_call {p}_calls[{len(calls)}] = {{\n" + ",\n".join(call_rows) + "\n};\n")
    dev = fixture.deviation or {}
    fields = [
        _c_string(fixture.id), class_id, _c_string(spec.class_name), _c_string(spec.semantics),
        str(int(spec.semantics == "keras2")), str(B), str(T), str(D), merge[0], _c_string(merge[1]),
        policy[0], _c_string(policy[1]), "\n   " + forward, "\n   " + backward,
        f"\n   {len(weights)}", f"{p}_weights", str(len(fixture.output_names)), f"{p}_names",
        str(len(calls)), f"{p}_calls", c_double(fixture.tolerance.atol), c_double(fixture.tolerance.rtol),
        _c_string(fixture.tolerance_policy),
        _c_string(dev["name"]) if dev else "NULL", _c_string(dev["quirk"]) if dev else "NULL",
    ]
    return "  {" + ", ".join(fields) + "}"


def _c_header(fixtures: Sequence[Any], traces: bool = False) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(header text, ids in it, (id, reason) of fixtures the layout cannot hold)."""
    parts, descriptors, ids, skipped = [], [], [], []
    for f in fixtures:
        w = _CWriter()
        try:
            descriptors.append(_c_fixture(w, len(ids), f, traces))
        except (BilstmRefError, KeyError, TypeError, ValueError) as e:
            skipped.append((f.id, f"not expressible in the C header: {type(e).__name__}: {e}"))
            continue
        parts += w.parts
        ids.append(f.id)
    if not ids:
        raise FixtureIntegrityError("a C header needs at least one fixture (C99 has no empty arrays)"
                                    + "".join(f"; {fid}: {why}" for fid, why in skipped))
    acts = ",\n".join(f"  BFX_ACT_{a.upper()}" for a in C_ACTIVATIONS)
    pols = ",\n".join(f"  BFX_POLICY_{p.upper()}" for p in C_POLICIES)
    head = (_C_PRELUDE.replace("@ACTS@", acts).replace("@POLICIES@", pols).replace("@LAYOUT@", str(C_LAYOUT_VERSION))
            + f"#define BILSTM_FIXTURE_COUNT {len(ids)}\n")
    tail = ("\n/* ---- every fixture ---- */\n"
            "static const bfx_fixture bilstm_fixtures[BILSTM_FIXTURE_COUNT] = {\n" + ",\n".join(descriptors) + "\n};\n"
            "\n#endif /* BILSTM_REF_FIXTURES_H */\n")
    return head + "".join(parts) + tail, ids, skipped


def c_header_text(fixtures: Sequence[Any]) -> str:
    """The C99 header of ``fixtures`` (:class:`bilstm_ref.fixtures.Fixture` objects; those the layout
    cannot hold are left out: use :func:`export_fixtures` to learn which)."""
    return _c_header(fixtures)[0]


# --- writing ------------------------------------------------------------------------------------
def _write_atomic(out: Path, text: str) -> int:
    """Write ``text`` to ``out`` through a temp file in the same folder and ``os.replace``."""
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileAccessError(f"{str(folder)!r}: no such directory for the export")
    if out.is_dir():
        raise FileAccessError(f"{str(out)!r} is a directory; give a file name")
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the export private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return len(data)


def export_fixtures(directory: PathLike, fmt: str, out: PathLike,
                    patterns: Optional[Sequence[str]] = None, traces: bool = False) -> ExportSummary:
    """Export the fixtures of ``directory`` (those whose id matches every ``-k``-style pattern in
    ``patterns``; ``~pat`` excludes) into one ``fmt`` file (``"json"`` or ``"c-header"``) at ``out``;
    with ``traces``, every call carries the reference's gate trace of each direction.

    A fixture that fails its integrity checks is skipped, with the reason, in the summary.
    Raises :class:`BilstmRefError` subclasses: an unknown format or directory, nothing to export,
    an unwritable output (then nothing is written).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r}: expected one of {FORMATS}")
    fixtures, skipped = _load(directory, patterns)
    if not fixtures:
        why = f"; {len(skipped)} unreadable" if skipped else ""
        raise FixtureIntegrityError(f"{str(directory)!r}: no fixture to export{why}"
                                    + (f" (patterns {list(patterns)})" if patterns else ""))
    if fmt == "json":
        text, ids = json_text(fixtures, traces), [f.id for f in fixtures]
    else:
        text, ids, more = _c_header(fixtures, traces)
        skipped += more
    summary = ExportSummary(fmt, str(out), ids, skipped)
    try:
        summary.bytes = _write_atomic(Path(out), text)
    except OSError as e:
        raise FileAccessError(f"{str(out)!r}: cannot write the export ({e.strerror or e})") from None
    return summary


def export_main(directory: PathLike, fmt: str, out: PathLike,
                patterns: Optional[Sequence[str]] = None, traces: bool = False) -> tuple[int, str]:
    """The ``bilstm-ref fixtures export`` command: (exit status, text to print).

    Exit status 0: every selected fixture exported; 1: written, but some fixtures were skipped as
    unreadable (listed); 2: nothing written (no fixture, bad directory, format or output path).
    """
    try:
        summary = export_fixtures(directory, fmt, out, patterns, traces)
    except BilstmRefError as e:
        return 2, f"error: {e}"
    return (1 if summary.skipped else 0), summary.describe()



def _main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m bilstm_ref.fixture_export DIR --format json|c-header --out FILE [-k PATTERN]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bilstm_ref.fixture_export",
                                description="Export regression fixtures as one JSON document or one C99 header.")
    p.add_argument("directory", help="fixture directory (e.g. fixtures)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("-k", action="append", default=None, metavar="PATTERN",
                   help="only ids containing PATTERN (repeatable; ~PATTERN excludes)")
    args = p.parse_args(argv)
    code, text = export_main(args.directory, args.format, args.out, args.k)
    print(text)
    return code


if __name__ == "__main__":
    raise SystemExit(_main())
