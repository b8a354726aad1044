"""Runtime adapters (bilstm_ref.adapters): converted layers match live Keras, the conversion cache is
hit, converter refusals are ConversionErrors, and untrusted ONNX / TFLite files are refused safely.

The Keras tests convert a handful of matrix cases (about a second each on 2 cores); the safety tests
build tiny files in tmp_path with onnx.helper and need neither Keras nor a converter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from bilstm_ref.adapters import ConversionError, RuntimeUnavailableError, open_converted
from bilstm_ref.adapters import base
from bilstm_ref.errors import (CorruptFileError, InputDataError, ResourceLimitError, UnsafeModelError,
                               UnsupportedModelError)
from bilstm_ref.conformance.matrix import Case
from bilstm_ref.conformance.judge import run_impl

#: Converted graphs compute in float32 (onnxruntime, LiteRT, OpenVINO's CPU plugin at the f32 hint);
#: Keras's float32 answers differ from them by rounding only (measured <= 4e-7).
TOL = 1e-5

ONNX_REASON = "the ONNX adapter needs onnx and onnxruntime (pip install 'bilstm_ref[convert]')"
CASES = {  # id -> (case, ONNX op form, TFLite op form)
    "concat-seq-mask": (Case("bidi", True, False, mask="right"), "loop", "loop"),
    "return-state-init": (Case("bidi", True, True, initial_state=True), "fused LSTM op", "loop"),
    "sum-last-state-mask": (Case("bidi", False, True, merge_mode="sum", mask="holes"), "loop", "loop"),
    "softsign-merge-none": (Case("bidi", True, False, merge_mode="none", activation="softsign", group="pairwise"),
                            "loop", "loop"),
    "lstm-backwards": (Case("lstm", True, True, go_backwards=True), "fused LSTM op", "loop"),
}
CONVERTERS = {
    "onnx": ("tf2onnx", "onnxruntime"),
    "tflite": ("tensorflow", "ai_edge_litert"),
    "openvino": ("tf2onnx", "openvino"),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One conversion cache for the module (so a case converted once is not converted again)."""
    folder = tmp_path_factory.mktemp("conversions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BILSTM_REF_CACHE", str(folder))
        yield folder


def adapter(name: str) -> Any:
    """The adapter module, skipped with the reason when its converter or runtime is missing."""
    for module in CONVERTERS[name]:
        pytest.importorskip(module, reason=f"the {name} adapter needs {module} (pip install 'bilstm_ref[convert]')")
    import importlib

    return importlib.import_module(f"bilstm_ref.adapters.{name}")


def max_errors(case: Case, expected: list[dict[str, np.ndarray]], impl: Any) -> dict[str, float]:
    got = run_impl(case, impl)
    return {n: float(np.max(np.abs(got[0][n] - expected[0][n]))) for n in case.output_names}


# --- converted layers against live Keras ----------------------------------------------------------
@pytest.mark.keras
@pytest.mark.parametrize("which", ["onnx", "tflite"])
@pytest.mark.parametrize("label", list(CASES))
def test_converted_layer_matches_keras(which: str, label: str, keras_oracle: Any, cache: Path) -> None:
    mod = adapter(which)
    case, onnx_form, tflite_form = CASES[label]
    impl = mod.factory(case.spec())
    errors = max_errors(case, keras_oracle.run(case), impl)
    assert max(errors.values()) <= TOL, errors
    assert impl.op_form == (onnx_form if which == "onnx" else tflite_form)
    assert impl.converter.startswith("tf2onnx" if which == "onnx" else "TFLiteConverter")
    assert impl.runtime.split()[0] in ("onnxruntime", "ai-edge-litert")
    (path,) = impl.paths.values()
    assert path.parent == cache and path.suffix == "." + which


@pytest.mark.keras
def test_second_build_hits_the_cache(keras_oracle: Any, cache: Path) -> None:
    onnx = adapter("onnx")
    case = CASES["lstm-backwards"][0]
    run_impl(case, onnx.factory(case.spec()))  # converted here or by the test above
    before = (base.cache_stats.conversions, base.cache_stats.hits)
    errors = max_errors(case, keras_oracle.run(case), onnx.factory(case.spec()))
    assert max(errors.values()) <= TOL
    assert (base.cache_stats.conversions, base.cache_stats.hits) == (before[0], before[1] + 1)
    # other weights are another entry
    other = Case("lstm", True, True, go_backwards=True, units=3)
    run_impl(other, onnx.factory(other.spec()))
    assert base.cache_stats.conversions == before[0] + 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "temporary files left in the cache"


@pytest.mark.keras
def test_tflite_dynamic_batch_is_a_conversion_error(keras_oracle: Any, cache: Path) -> None:
    tflite = adapter("tflite")
    case = CASES["concat-seq-mask"][0]
    impl = tflite.factory(case.spec(), fixed_batch=False)
    with pytest.raises(ConversionError) as info:
        run_impl(case, impl)
    assert info.value.converter.startswith("TFLiteConverter")
    assert "TensorListReserve" in info.value.message and "element_shape to be static" in info.value.message
    assert isinstance(info.value, UnsupportedModelError)


@pytest.mark.keras
def test_tflite_outputs_follow_the_signature_not_the_interpreter(cache: Path, keras_oracle: Any) -> None:
    tflite = adapter("tflite")
    case = CASES["return-state-init"][0]
    impl = tflite.factory(case.spec())
    run_impl(case, impl)
    model = open_converted(next(iter(impl.paths.values())))
    assert [o.name for o in model.outputs] == [f"output_{i}" for i in range(5)]
    assert [o.shape for o in model.outputs] == [(3, None, 8)] + [(3, 4)] * 4  # batch fixed, time dynamic
    interp_order = [d["name"] for d in model._interp.get_output_details()]
    assert interp_order != sorted(interp_order), "the pitfall the adapter avoids is gone: update docs/converters.md"


@pytest.mark.keras
@pytest.mark.parametrize("which", ["onnx", "tflite"])
def test_intermediate_tensors_can_be_exposed(which: str, cache: Path, keras_oracle: Any) -> None:
    mod = adapter(which)
    case = CASES["lstm-backwards"][0]
    impl = mod.factory(case.spec())
    run_impl(case, impl)
    model = open_converted(next(iter(impl.paths.values())))
    names = model.tensor_names()
    assert names
    wider = model.with_outputs(names[:2])
    feeds = {"x": case.calls[0].x}
    plain, more = model.run(feeds), wider.run(feeds)
    assert list(more)[:len(plain)] == list(plain) and list(more)[len(plain):] == names[:2]
    for name in plain:  # the widened TFLite model runs without XNNPACK, so rounding may differ
        np.testing.assert_allclose(more[name], plain[name], rtol=0, atol=TOL)
    with pytest.raises(InputDataError, match="no intermediate tensor named"):
        model.with_outputs(["no-such-tensor"])


@pytest.mark.keras
def test_openvino_runs_in_float32_and_refuses_loops(cache: Path, keras_oracle: Any) -> None:
    ov = adapter("openvino")
    case = CASES["return-state-init"][0]
    impl = ov.factory(case.spec())
    errors = max_errors(case, keras_oracle.run(case), impl)
    assert max(errors.values()) <= TOL, errors  # bf16 (the CPU plugin's default on some CPUs) would be ~1e-3
    assert impl.op_form == "fused LSTM op (LSTMSequence)"
    masked = CASES["concat-seq-mask"][0]
    with pytest.raises(ConversionError, match="unconverted ONNX ops: Loop"):
        run_impl(masked, ov.factory(masked.spec()))


# --- refusals at build time ----------------------------------------------------------------------
@pytest.mark.parametrize("which", ["onnx", "tflite"])
def test_stateful_layers_are_refused_at_build(which: str) -> None:
    import importlib

    mod = importlib.import_module(f"bilstm_ref.adapters.{which}")
    case = Case("bidi", True, False, stateful=True)
    with pytest.raises(UnsupportedModelError, match="no variables across calls"):
        mod.factory(case.spec())


def test_unknown_suffix_and_missing_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedModelError, match="unknown converted-model suffix"):
        open_converted(tmp_path / "m.pb")
    monkeypatch.setitem(sys.modules, "onnx", None)  # an import of it now fails
    with pytest.raises(RuntimeUnavailableError, match=r'pip install "bilstm_ref\[convert\]"'):
        open_converted(tmp_path / "m.onnx")


# --- untrusted ONNX files ------------------------------------------------------------------------
def tiny_onnx(folder: Path, *, external: str = "", domain: str = "", dims: tuple[int, ...] = (2,)) -> Path:
    """``Y = X + W`` with W (2,) float32 = [1, 2]; W's data at ``external`` when given."""
    pytest.importorskip("onnx", reason=ONNX_REASON)
    pytest.importorskip("onnxruntime", reason=ONNX_REASON)
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "W")
    if external:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=external)
    if dims != (2,):
        del w.dims[:]
        w.dims.extend(dims)
    node = helper.make_node("Add", ["X", "W"], ["Y"], name="add", domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])], [w])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="test", producer_version="1")
    model.ir_version = 8
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def weights_file(path: Path) -> Path:
    path.write_bytes(np.array([1.0, 2.0], np.float32).tobytes())
    return path


def test_onnx_external_data_inside_the_folder_is_read(tmp_path: Path) -> None:
    weights_file(tmp_path / "w.bin")
    model = open_converted(tiny_onnx(tmp_path, external="w.bin"))
    out = model.run({"X": np.ones((1, 2), np.float32)})
    np.testing.assert_array_equal(out["Y"], [[2.0, 3.0]])
    assert model.converter == "test 1" and model.op_form() == "no recurrent op found"
    assert [(i.name, i.shape, i.dtype) for i in model.inputs] == [("X", (None, 2), "float32")]


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
def test_onnx_external_data_outside_the_folder_is_refused(where: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    outside = weights_file(tmp_path / "secret.bin")
    location = {"dotdot": "../secret.bin", "absolute": str(outside), "symlink": "link.bin"}[where]
    if where == "symlink":
        (folder / "link.bin").symlink_to(outside)
    path = tiny_onnx(folder, external=location)
    with pytest.raises(UnsafeModelError) as info:
        open_converted(path)
    text = str(info.value)
    assert str(path) in text and "'W'" in text and repr(location) in text and "outside the model's folder" in text


def test_onnx_custom_domain_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeModelError, match=r"custom domain 'ai.onnx.contrib'.*never loaded"):
        open_converted(tiny_onnx(tmp_path, domain="ai.onnx.contrib"))


def test_onnx_truncated_or_garbage_file_is_corrupt(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path)
    data = path.read_bytes()
    for name, content in (("truncated.onnx", data[: len(data) // 2]), ("garbage.onnx", os.urandom(64) + b"\xff" * 8)):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(CorruptFileError, match=name):
            open_converted(bad)


def test_onnx_sizes_are_bounded_before_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = tiny_onnx(tmp_path, external="w.bin", dims=(1 << 20, 1 << 20))  # declares 4 TiB
    weights_file(tmp_path / "w.bin")
    with pytest.raises(ResourceLimitError, match=r"initializer 'W' declares shape \(1048576, 1048576\)"):
        open_converted(huge)
    monkeypatch.setattr(base, "MAX_FILE_BYTES", 16)
    with pytest.raises(ResourceLimitError, match=r"m.onnx \(onnx model; limit bilstm_ref.adapters.base.MAX_FILE_BYTES\)"):
        open_converted(tiny_onnx(tmp_path))


def test_onnx_feeds_are_checked(tmp_path: Path) -> None:
    model = open_converted(tiny_onnx(tmp_path))
    with pytest.raises(InputDataError, match=r"missing \['X'\], unexpected \['x'\]"):
        model.run({"x": np.ones((1, 2))})
    from bilstm_ref.errors import ShapeMismatchError

    with pytest.raises(ShapeMismatchError, match=r"expects shape \('\?', 2\), got \(1, 3\)"):
        model.run({"X": np.ones((1, 3))})


# --- untrusted TFLite files ----------------------------------------------------------------------
def test_tflite_garbage_is_corrupt(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="the TFLite adapter needs ai-edge-litert (pip install 'bilstm_ref[convert]')")
    for name, content in (("nomagic.tflite", b"\0" * 64), ("bad.tflite", b"\x10\0\0\0TFL3" + os.urandom(200))):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(CorruptFileError, match=name):
            open_converted(bad)
