"""Fixtures for any language: the JSON export round-trips every committed fixture bit for bit, the C99
header compiles pedantically and holds the exact values, and the C99 port in examples/c passes every
committed fixture it supports and fails, naming it, a fixture whose expected value was altered."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bilstm_ref.fixtures import export as fixture_export
from bilstm_ref.errors import BilstmRefError, FileAccessError, FixtureIntegrityError
from bilstm_ref.fixtures.export import c_double, export_fixtures, export_main, read_exported_json
from bilstm_ref.fixtures import read_fixture, scan, write_fixture
from bilstm_ref.conformance.judge import run_calls
from bilstm_ref.reference.spec import reference_factory

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
PORT = ROOT / "examples" / "c"
CFLAGS = ["-std=c99", "-Wall", "-Werror", "-pedantic"]
SUMMARY = re.compile(r"harness: (\d+) fixtures: (\d+) passed, (\d+) known-deviation, (\d+) skipped, (\d+) failed")


def bits(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    return a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()


def arrays_of(fixture) -> list[np.ndarray]:
    """Every array of a fixture in the order the exports hold them."""
    out = [np.asarray(w) for w in fixture.spec.weights]
    for call in fixture.calls:
        out.append(np.asarray(call.x))
        if call.mask is not None:
            out.append(np.asarray(call.mask))
        out += [np.asarray(s) for s in call.initial_state or ()]
        out += [np.asarray(call.expected[n]) for n in fixture.output_names]
    return out


def decoded_arrays(doc: dict) -> list[np.ndarray]:
    out = list(doc["weights"])
    for call in doc["calls"]:
        out.append(call["x"])
        if call["mask"] is not None:
            out.append(call["mask"])
        out += list(call["initial_state"] or ())
        out += [call["expected"][n] for n in doc["output_names"]]
    return out


@pytest.fixture(scope="module")
def committed() -> list:
    return [read_fixture(p) for p in scan(FIXTURES).manifests]


# --- JSON ---------------------------------------------------------------------------------------
def test_json_round_trips_every_committed_fixture_bit_for_bit(tmp_path: Path, committed: list) -> None:
    out = tmp_path / "fixtures.json"
    summary = export_fixtures(FIXTURES, "json", out)
    assert summary.count == len(committed) > 0 and not summary.skipped
    text = out.read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))  # strict JSON
    assert doc["format"] == "bilstm_ref.fixtures" and doc["version"] == 1
    decoded = {d["id"]: d for d in read_exported_json(out)}
    assert list(decoded) == [f.id for f in committed]
    for f in committed:
        d = decoded[f.id]
        assert (d["class_name"], d["config"], d["semantics"], d["flags"], d["deviation"]) == (
            f.spec.class_name, f.spec.config, f.spec.semantics, f.flags, f.deviation)
        assert d["tolerance"] == {"atol": f.tolerance.atol, "rtol": f.tolerance.rtol, "policy": f.tolerance_policy}
        assert d["output_names"] == list(f.output_names) and len(d["calls"]) == len(f.calls)
        assert [c["reset_before"] for c in d["calls"]] == [c.reset_before for c in f.calls]
        assert len(d["weight_names"]) == len(f.spec.weights)
        mine, theirs = arrays_of(f), decoded_arrays(d)
        assert len(mine) == len(theirs), f.id
        for a, b in zip(mine, theirs, strict=True):
            assert bits(a) == bits(b), f.id


def _variant(fixture, fid: str, expected_edit=None, x_edit=None, by_reference: bool = False):
    """A copy of ``fixture`` under a new id, with edited expected values or inputs."""
    calls = []
    for call in fixture.calls:
        x = np.array(call.x)
        if x_edit:
            x_edit(x)
        expected = {k: np.array(v) for k, v in call.expected.items()}
        if expected_edit:
            for v in expected.values():
                expected_edit(v)
        calls.append(dataclasses.replace(call, x=x, expected=expected))
    out = dataclasses.replace(fixture, id=fid, calls=tuple(calls))
    if by_reference:  # Keras's answers replaced by the reference's (float64) on the edited inputs
        got = run_calls(out.calls, out.output_names, reference_factory(out.spec))
        out = dataclasses.replace(out, calls=tuple(dataclasses.replace(c, expected=g)
                                                   for c, g in zip(out.calls, got, strict=True)))
    return out


def _non_finite(v: np.ndarray) -> None:
    flat = v.reshape(-1)
    canonical_nan, payload_nan = np.array(np.nan, dtype=v.dtype), np.array(np.nan, dtype=v.dtype)
    payload_nan.view(f"<u{v.dtype.itemsize}")[...] |= 1  # a NaN with a payload
    flat[:5] = [np.inf, -np.inf, -0.0, canonical_nan, payload_nan]


def test_json_writes_non_finite_values_explicitly_and_keeps_their_bits(tmp_path: Path, committed: list) -> None:
    src = tmp_path / "src"
    src.mkdir()
    base = next(f for f in committed if f.spec.class_name == "LSTM")
    write_fixture(src, _variant(base, "nonfinite", expected_edit=_non_finite))
    out = tmp_path / "x.json"
    export_fixtures(src, "json", out)
    text = out.read_text(encoding="utf-8")
    for token in ('"Infinity"', '"-Infinity"', '"NaN"', '"NaN:0x', "-0.0"):
        assert token in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))
    (doc,) = read_exported_json(out)
    fixture = read_fixture(src / "nonfinite.json")
    for a, b in zip(arrays_of(fixture), decoded_arrays(doc), strict=True):
        assert bits(a) == bits(b)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_json_numbers_are_shortest_and_exact_in_their_own_dtype(dtype: str) -> None:
    rng = np.random.default_rng(0)
    if dtype == "float16":
        a = np.arange(2**16, dtype=np.uint16).view(np.float16)  # every float16
    else:
        width = np.dtype(dtype).itemsize * 8
        a = rng.integers(0, 2**63, size=200_000, dtype=np.uint64).astype(f"u{width // 8}").view(dtype)
    obj = fixture_export._json_array(a)
    obj["data"] = json.loads(obj["data"].text)
    assert bits(fixture_export._decode_array(obj, "test")) == bits(a)
    assert fixture_export._json_array(np.array([0.1], dtype=np.float32))["data"].text == "[0.1]"


def test_read_exported_json_refuses_other_documents(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other", "version": 1, "fixtures": []}', encoding="utf-8")
    with pytest.raises(BilstmRefError, match="not a bilstm_ref.fixtures document"):
        read_exported_json(bad)
    bad.write_text('{"format": "bilstm_ref.fixtures", "version": 1, "fixtures": [{"id": "a", "weights": '
                   '[{"name": "k", "dtype": "float32", "shape": [2], "data": [1, "nope"]}], "calls": []}]}',
                   encoding="utf-8")
    with pytest.raises(BilstmRefError, match="nope"):
        read_exported_json(bad)


# --- exporting: selection, summary, atomic writes -------------------------------------------------
def test_patterns_select_fixtures_and_export_main_reports(tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    code, text = export_main(FIXTURES, "json", out, ["lstm-", "~mask_left"])
    ids = [d["id"] for d in read_exported_json(out)]
    assert code == 0 and ids and all(i.startswith("lstm-") and "mask_left" not in i for i in ids)
    assert f"exported {len(ids)} fixtures as json" in text
    assert export_main(FIXTURES, "xml", out, None)[0] == 2
    code, text = export_main(tmp_path / "missing", "json", out, None)
    assert code == 2 and "not a directory of fixtures" in text
    code, text = export_main(FIXTURES, "json", out, ["no-such-id"])
    assert code == 2 and "no fixture to export" in text


def test_an_unreadable_fixture_is_skipped_with_its_reason(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    manifests = scan(FIXTURES).manifests[:2]
    for m in manifests:
        shutil.copy(m, src)
        shutil.copy(FIXTURES / json.loads(m.read_text(encoding="utf-8"))["payload"]["file"], src)
    payload = next(src.glob("*.npz"))
    data = bytearray(payload.read_bytes())
    data[-10] ^= 1
    payload.write_bytes(bytes(data))
    code, text = export_main(src, "c-header", tmp_path / "f.h", None)
    assert code == 1 and "skipped 1:" in text and "sha256 mismatch" in text
    assert "exported 1 fixture as c-header" in text


def test_export_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "f.json"
    out.write_text("previous", encoding="utf-8")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fixture_export.os, "fsync", broken_fsync)
    with pytest.raises(FileAccessError, match="No space left"):
        export_fixtures(FIXTURES, "json", out, ["lstm-"])
    assert out.read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temp file left
    with pytest.raises(FixtureIntegrityError):
        export_fixtures(FIXTURES, "c-header", out, ["no-such-id"])
    assert out.read_text(encoding="utf-8") == "previous"
    with pytest.raises(FileAccessError, match="no such directory"):
        export_fixtures(FIXTURES, "json", tmp_path / "nowhere" / "f.json", ["lstm-"])


def test_c_literals_are_exact() -> None:
    for v in (0.0, -0.0, 1.0, 0.1, -2.5e-310, 1.7976931348623157e308, float(np.float32(0.1))):
        assert float.fromhex(c_double(v)) == v and math.copysign(1, float.fromhex(c_double(v))) == math.copysign(1, v)
    assert c_double(0.75) == "0x1.8p-1" and c_double(-0.0) == "-0x0p+0"
    assert (c_double(math.nan), c_double(math.inf), c_double(-math.inf)) == ("NAN", "INFINITY", "(-INFINITY)")


# --- the C header and the C99 port ----------------------------------------------------------------
def _cc() -> str:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler: `cc` is not on PATH (the C header and the C99 port need one)")
    return cc


def _compile(out: Path, header_dir: Path, *sources: Path) -> Path:
    cmd = [_cc(), *CFLAGS, "-Wextra", "-O1", f"-I{header_dir}", f"-I{PORT}", *map(str, sources), "-lm", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}{done.stderr}"
    return out


def _harness(header_dir: Path) -> Path:
    return _compile(header_dir / "harness", header_dir, PORT / "harness.c", PORT / "bilstm.c")


def _run(exe: Path, *args: str) -> tuple[int, str, tuple[int, ...]]:
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
    m = SUMMARY.search(done.stdout)
    assert m, done.stdout[-2000:] + done.stderr
    return done.returncode, done.stdout, tuple(int(g) for g in m.groups())


@pytest.fixture(scope="module")
def header(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _cc()
    folder = tmp_path_factory.mktemp("c_header")
    summary = export_fixtures(FIXTURES, "c-header", folder / "fixtures.h")
    assert summary.count == len(scan(FIXTURES).manifests) and not summary.skipped
    return folder


DUMP = r"""
#include <stdio.h>
#include "fixtures.h"
static void dump(const double *a, long n) {
  long i;
  for (i = 0; i < n; i++) printf("%a\n", a[i]);
}
int main(void) {
  int f, w, k, j, s;
  for (f = 0; f < BILSTM_FIXTURE_COUNT; f++) {
    const bfx_fixture *fx = &bilstm_fixtures[f];
    long xs = (long)fx->batch * fx->time * fx->input_dim;
    for (w = 0; w < fx->n_weights; w++) {
      const bfx_array *a = &fx->weights[w];
      dump(a->data, a->ndim == 1 ? a->shape[0] : (long)a->shape[0] * a->shape[1]);
    }
    for (k = 0; k < fx->n_calls; k++) {
      const bfx_call *c = &fx->calls[k];
      dump(c->x, xs);
      if (c->mask) for (j = 0; j < fx->batch * fx->time; j++) printf("%d\n", c->mask[j]);
      for (s = 0; s < c->n_initial_state; s++) {
        int units = s < 2 ? fx->forward.units : fx->backward.units;
        dump(c->initial_state[s], (long)fx->batch * units);
      }
      for (j = 0; j < fx->n_outputs; j++) {
        const bfx_output *o = &c->expected[j];
        long n = 1;
        for (s = 0; s < o->ndim; s++) n *= o->shape[s];
        dump(o->data, n);
      }
    }
  }
  return 0;
}
"""


def _dumped_values(folder: Path) -> list[str]:
    (folder / "dump.c").write_text(DUMP, encoding="utf-8")
    exe = _compile(folder / "dump", folder, folder / "dump.c")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


def _same(expected: np.ndarray, dumped: list[str]) -> bool:
    if expected.dtype == bool:
        return [str(int(v)) for v in expected.reshape(-1).tolist()] == dumped
    got = np.array([float.fromhex(t) for t in dumped], dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64).reshape(-1)
    return bool(np.array_equal(np.isnan(got), np.isnan(want))
                and got[~np.isnan(got)].tobytes() == want[~np.isnan(want)].tobytes())


def test_c_header_compiles_pedantically_and_holds_every_value_exactly(header: Path, committed: list) -> None:
    dumped = iter(_dumped_values(header))
    for f in committed:
        for a in arrays_of(f):
            assert _same(a, [next(dumped) for _ in range(a.size)]), f.id
    assert next(dumped, None) is None


def test_c_port_passes_every_committed_fixture_it_supports(header: Path, committed: list) -> None:
    code, out, (total, passed, deviations, skipped, failed) = _run(_harness(header))
    assert code == 0 and failed == 0, "\n".join(line for line in out.splitlines() if line.startswith("FAIL"))
    assert total == len(committed) == passed + deviations + skipped + failed
    # Every committed fixture is supported: half-precision policies by rounding the outputs, the
    # recorded TF deviation by reproducing its quirk (and differing without it).
    assert skipped == 0 and deviations == sum(f.deviation is not None for f in committed), out[-3000:]
    assert all(re.match(r"(PASS|DEVIATION|SKIP) ", line) for line in out.splitlines()[:-1])
    print(f"C port: {passed} passed, {deviations} known-deviation, {skipped} skipped of {total}")


def test_c_port_fails_naming_a_fixture_whose_expected_value_was_altered(header: Path, committed: list) -> None:
    target = next(i for i, f in enumerate(committed) if f.deviation is None and "stateful" in f.id)
    text = (header / "fixtures.h").read_text(encoding="utf-8")
    altered = re.sub(rf"(static const double bfx{target}_o0\[\d+\] = {{\n  )([^,\n]+)",
                     lambda m: m.group(1) + c_double(float.fromhex(m.group(2)) + 1e-3), text, count=1)
    assert altered != text
    folder = header / "altered"
    folder.mkdir()
    (folder / "fixtures.h").write_text(altered, encoding="utf-8")
    code, out, (total, passed, deviations, skipped, failed) = _run(_harness(folder), "-q")
    assert code == 1 and failed == 1 and passed == total - deviations - 1 and skipped == 0
    (line,) = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert line.startswith(f"FAIL {committed[target].id}: call 0 output {committed[target].output_names[0]}[0]")


def test_c_port_agrees_on_nan_and_infinity(tmp_path: Path, committed: list) -> None:
    """NaN inputs propagate to the same outputs, and an infinite input saturates the same way, as in
    the reference; the exported header writes NAN / INFINITY, and the harness compares them."""
    _cc()
    src = tmp_path / "src"
    src.mkdir()

    def poison(x: np.ndarray) -> None:
        x[0, 0, 0] = np.nan
        x[-1, -1, -1] = np.inf

    picks = [f for f in committed if f.deviation is None and f.tolerance_policy in ("float32", "float64")][:12]
    for i, f in enumerate(picks):
        write_fixture(src, _variant(f, f"poisoned{i}", x_edit=poison, by_reference=True))
    export_fixtures(src, "c-header", tmp_path / "fixtures.h")
    assert "NAN" in (tmp_path / "fixtures.h").read_text(encoding="utf-8")
    code, out, (total, passed, _, _, failed) = _run(_harness(tmp_path))
    assert code == 0 and (total, passed, failed) == (len(picks), len(picks), 0), out
    dumped = iter(_dumped_values(tmp_path))
    nan = 0
    for path in scan(src).manifests:  # the export's order
        fixture = read_fixture(path)
        nan += sum(int(np.isnan(v).sum()) for c in fixture.calls for v in c.expected.values())
        for a in arrays_of(fixture):
            assert _same(a, [next(dumped) for _ in range(a.size)])
    assert nan > 0


def test_the_header_writes_every_float_bit_pattern_class(tmp_path: Path, committed: list) -> None:
    """-0.0, infinities, NaN and subnormals survive the header (compiled and read back in C)."""
    _cc()
    src = tmp_path / "src"
    src.mkdir()

    def edit(v: np.ndarray) -> None:
        _non_finite(v)
        v.reshape(-1)[5] = np.finfo(v.dtype).smallest_subnormal

    write_fixture(src, _variant(committed[0], "nonfinite", expected_edit=edit))
    export_fixtures(src, "c-header", tmp_path / "fixtures.h")
    dumped = iter(_dumped_values(tmp_path))
    for a in arrays_of(read_fixture(src / "nonfinite.json")):
        assert _same(a, [next(dumped) for _ in range(a.size)])
    assert struct.pack("<d", float.fromhex(c_double(-0.0))) == struct.pack("<d", -0.0)
    assert os.access(tmp_path / "fixtures.h", os.R_OK)


def test_c_port_follows_keras2_hard_sigmoid(tmp_path: Path, committed: list) -> None:
    """A Keras 2 fixture (answers by the reference under keras2 semantics) passes only because the
    port switches hard_sigmoid to Keras 2's clip(0.2x + 0.5, 0, 1)."""
    _cc()
    src = tmp_path / "src"
    src.mkdir()
    base = next(f for f in committed if f.deviation is None and f.tolerance_policy == "float32"
                and "_hard_sigmoid" in f.id and "return_sequences" not in f.id)
    spec = dataclasses.replace(base.spec, provenance={**base.spec.provenance, "semantics": "keras2"})
    keras2 = _variant(dataclasses.replace(base, spec=spec), "keras2", by_reference=True)
    write_fixture(src, keras2)
    keras3 = run_calls(base.calls, base.output_names, reference_factory(base.spec))
    assert any(not np.allclose(got[n], c.expected[n], atol=1e-4, rtol=1e-4)
               for got, c in zip(keras3, keras2.calls, strict=True) for n in base.output_names)
    export_fixtures(src, "c-header", tmp_path / "fixtures.h")
    assert "keras2" in (tmp_path / "fixtures.h").read_text(encoding="utf-8")
    code, out, (total, passed, _, _, failed) = _run(_harness(tmp_path))
    assert code == 0 and (total, passed, failed) == (1, 1, 0), out


def test_a_fixture_the_header_cannot_hold_is_skipped_with_the_reason(tmp_path: Path, committed: list) -> None:
    src = tmp_path / "src"
    src.mkdir()
    bidi = next(f for f in committed if f.spec.class_name == "Bidirectional")
    odd = dataclasses.replace(bidi, id="odd", spec=dataclasses.replace(
        bidi.spec, config={**bidi.spec.config, "merge_mode": "max"}))
    write_fixture(src, odd)
    write_fixture(src, dataclasses.replace(bidi, id="plain"))
    code, text = export_main(src, "c-header", tmp_path / "f.h", None)
    assert code == 1 and "odd: not expressible in the C header" in text and "merge_mode 'max'" in text
    assert "BILSTM_FIXTURE_COUNT 1\n" in (tmp_path / "f.h").read_text(encoding="utf-8")
    assert export_main(src, "c-header", tmp_path / "g.h", ["odd"])[0] == 2 and not (tmp_path / "g.h").exists()


def test_traces_are_exported_and_equal_the_reference_steps(tmp_path: Path) -> None:
    from bilstm_ref.diagnose import trace
    from bilstm_ref.fixtures import read_fixture, scan
    from bilstm_ref.reference.spec import build

    out = tmp_path / "t.json"
    pattern = "bidi-concat-seq-state-mask_left-init"
    export_fixtures(FIXTURES, "json", out, [pattern], traces=True)
    fx = read_fixture(next(p for p in scan(FIXTURES).manifests if p.name.startswith(pattern + ".")))
    doc = read_exported_json(out)[0]
    call = fx.calls[0]
    layer = build(fx.spec)
    y = layer(call.x, mask=call.mask, initial_state=list(call.initial_state))
    got = doc["calls"][0]["trace"]
    assert set(got) == {"forward", "backward"}
    # the last valid step's h of each direction is the state the layer returns (h1, h2)
    for d, name in (("forward", 1), ("backward", 3)):
        h = got[d]["h"][:, -1]
        assert np.array_equal(h, np.asarray(y[name])), d
    assert list(got["backward"]["order"]) == list(range(call.x.shape[1]))[::-1]
    direct = trace(fx.spec, call.x, mask=call.mask, initial_state=list(call.initial_state))
    assert np.array_equal(got["forward"]["i"], direct.direction("forward").processing_order["i"])


def test_a_header_with_traces_compiles_and_the_harness_still_passes(tmp_path: Path) -> None:
    _cc()
    summary = export_fixtures(FIXTURES, "c-header", tmp_path / "fixtures.h", ["bidi-concat-seq-state"], traces=True)
    assert summary.count and not summary.skipped
    text = (tmp_path / "fixtures.h").read_text()
    assert "static const bfx_trace" in text and '"backward"' in text
    code, out, counts = _run(_harness(tmp_path))
    assert code == 0 and counts[0] == summary.count, out[-2000:]
