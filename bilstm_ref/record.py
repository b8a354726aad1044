"""Recording fixtures: Keras's answers for matrix cases or for a layer of a user's model.

Keras is imported lazily (by :mod:`bilstm_ref.oracle` or here, for a user's model).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .compare import TOLERANCES
from .errors import KerasUnavailableError
from .fixtures import Call, Fixture, provenance
from .matrix import Case, mask_pattern, workarounds_for
from .spec import LayerSpec, layer_policy, output_names

__all__ = ["fixture_for_case", "model_fixtures", "real_data_fixtures", "CODE_PATH"]

CODE_PATH = "keras.layers LSTM/Bidirectional __call__, generic (non-cuDNN) kernel, CPU"


def _flags(case: Case) -> dict[str, Any]:
    flags = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}
    flags["id"] = case.id
    return flags


def fixture_for_case(case: Case, outputs: list[dict[str, np.ndarray]], versions: dict[str, str],
                     deviation: Optional[Any] = None, semantics: str = "keras3") -> Fixture:
    """The fixture of a matrix case from Keras's ``outputs`` (as :meth:`KerasOracle.run` returns them);
    ``semantics``: ``"keras2"`` for answers recorded from tf_keras (``fixtures verify`` reads it back)."""
    code_path = CODE_PATH
    for w in workarounds_for(case):
        code_path = f"keras Bidirectional.call() directly (workaround {w.name}), generic kernel, CPU"
    calls = tuple(
        Call(c.x, c.mask, c.initial_state, {n: out[n] for n in case.output_names}, c.reset_before)
        for c, out in zip(case.calls, outputs, strict=True)
    )
    dev = None if deviation is None else {"name": deviation.name, "quirk": deviation.quirk, "reason": deviation.reason}
    return Fixture(
        id=case.id,
        spec=case.spec(semantics),
        calls=calls,
        output_names=case.output_names,
        tolerance=TOLERANCES[case.tolerance_policy],
        tolerance_policy=case.dtype_policy,
        flags=_flags(case),
        provenance=provenance(versions, case.seed, code_path),
        deviation=dev,
    )


# --- a user's model -----------------------------------------------------------------------------
_FORWARD_KEYS = ("name", "units", "activation", "recurrent_activation", "use_bias", "return_sequences",
                 "return_state", "go_backwards", "stateful", "unroll", "dropout", "recurrent_dropout",
                 "zero_output_for_mask")


def _lstm_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """Only the options that shape the forward pass: nothing from the file is deserialized by Keras."""
    kw = {k: cfg[k] for k in _FORWARD_KEYS if k in cfg}
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if isinstance(dtype, str):
        kw["dtype"] = dtype
    return kw


def _keras_layer(spec: LayerSpec) -> tuple[Any, dict[str, str]]:
    """A live Keras layer equal to ``spec`` (tf_keras for Keras 2 semantics), and its versions."""
    try:
        if spec.semantics == "keras2":
            import tf_keras as k
        else:
            import keras as k
    except ImportError:
        need = "tf_keras (Keras 2 answers for a Keras 2 file)" if spec.semantics == "keras2" else "keras"
        raise KerasUnavailableError(f"recording fixtures needs {need}; pip install 'bilstm_ref[keras]'") from None
    L = k.layers
    cfg = spec.config
    if spec.class_name == "LSTM":
        layer = L.LSTM(**_lstm_kwargs(cfg))
    else:
        fw = L.LSTM(**_lstm_kwargs(cfg["layer"]["config"]))
        bw_cfg = cfg.get("backward_layer")
        bw = None if bw_cfg is None else L.LSTM(**_lstm_kwargs(bw_cfg["config"]))
        pol = cfg.get("dtype")
        extra = {"dtype": pol} if isinstance(pol, str) else {}
        layer = L.Bidirectional(fw, merge_mode=cfg.get("merge_mode", "concat"), backward_layer=bw, **extra)
    versions = {"keras": k.__version__, "backend": "tensorflow"}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:  # a Keras 3 backend other than TensorFlow
        versions["backend"] = k.backend.backend()
    return layer, versions


def _units(spec: LayerSpec) -> list[int]:
    if spec.class_name == "LSTM":
        return [int(spec.config["units"])] * 2
    fw = int(spec.config["layer"]["config"]["units"])
    bw_cfg = spec.config.get("backward_layer")
    bw = fw if bw_cfg is None else int(bw_cfg["config"]["units"])
    return [fw, fw, bw, bw]


def _stateful(spec: LayerSpec) -> bool:
    cfg = spec.config if spec.class_name == "LSTM" else spec.config["layer"]["config"]
    return bool(cfg.get("stateful"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "layer"


def model_fixtures(spec: LayerSpec, model_name: str, n_cases: int = 4, seed: int = 0, batch: int = 3,
                   time: int = 8, masks: bool = False, states: bool = False) -> list[Fixture]:
    """Fixtures for a user's layer (from :func:`bilstm_ref.load_spec`): random inputs of its shape,
    optional masks (right padding and holes, alternating) and initial states, answered by live Keras.
    Stateful layers get two chunks, then ``reset_state()`` and the first chunk again."""
    layer, versions = _keras_layer(spec)
    dim = int(spec.weights[0].shape[0])
    units = _units(spec)
    stateful = _stateful(spec)
    n_states = 2 if spec.class_name == "LSTM" else 4
    out = []
    for i in range(n_cases):
        rng = np.random.default_rng([seed, i])
        if stateful:
            layer = _keras_layer(spec)[0]  # fresh states for every fixture
        shape = (batch, time, dim)
        layer.build(shape) if not getattr(layer, "built", False) else None
        layer.set_weights([np.asarray(w, np.float32) for w in spec.weights])
        calls_in = []
        chunks = 2 if stateful else 1
        for c in range(chunks):
            x = rng.normal(size=shape).astype(np.float32)
            mask = mask_pattern("right" if i % 2 == 0 else "holes", batch, time, shift=c) if masks else None
            init = None
            if states and c == 0 and not stateful:
                init = tuple(rng.normal(size=(batch, units[j])).astype(np.float32) for j in range(n_states))
            calls_in.append((x, mask, init, False))
        if stateful:
            calls_in.append((calls_in[0][0], calls_in[0][1], None, True))
        calls = []
        names: tuple[str, ...] = ()
        for x, mask, init, reset in calls_in:
            if reset:
                (layer.reset_state if hasattr(layer, "reset_state") else layer.reset_states)()
            kwargs: dict[str, Any] = {}
            if mask is not None:
                kwargs["mask"] = mask
            if init is not None:
                kwargs["initial_state"] = list(init)
            y = layer(x, **kwargs)
            ys = list(y) if isinstance(y, (list, tuple)) else [y]
            names = output_names(spec, len(ys))
            calls.append(Call(x, mask, init, {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, ys, strict=True)},
                              reset))
        fid = f"{_slug(Path(model_name).name)}-{_slug(spec.provenance.get('layer', 'layer'))}-{i:03d}"
        policy = layer_policy(spec)
        out.append(Fixture(
            id=fid, spec=dataclasses.replace(spec, provenance={"semantics": spec.semantics}), calls=tuple(calls),
            output_names=names, tolerance=TOLERANCES[policy], tolerance_policy=policy,
            flags={"model": Path(model_name).name, "layer": spec.provenance.get("layer"), "case": i,
                   "masks": masks, "initial_state": states, "stateful": stateful, "batch": batch, "time": time},
            provenance={**provenance(versions, seed, "keras layer rebuilt from the parsed config, __call__, CPU"),
                        "model_file": Path(model_name).name, "model_keras_version": spec.provenance.get("keras_version"),
                        "semantics": spec.semantics},
        ))
    return out


# --- a user's model on the user's data -----------------------------------------------------------
def real_data_fixtures(model: str, inputs: Optional[str] = None, layers: Optional[Sequence[str]] = None, *,
                       config: Optional[str] = None, samples: int = 32, seed: int = 0,
                       time_steps: int = 16) -> list[Fixture]:
    """One fixture per layer from the user's data: the layer's real input, the mask Keras passes it,
    its initial states where wired, and Keras's outputs, captured in one forward pass of the whole model.

    Args:
        model: ``.keras``, legacy ``.h5`` or ``.weights.h5`` (with ``config``).
        inputs: ``.npz`` / ``.npy`` as for :func:`bilstm_ref.verify_model`; its first ``samples``
            samples are recorded. None: inputs generated from the model's input spec.
        layers: layer names; None: every LSTM and Bidirectional(LSTM).
    """
    from .loaders import load_spec
    from .verify.keras_model import KerasModel
    from .verify.model import input_source, mask_sources_of, select_layers

    km = KerasModel(model, config=config)
    chosen, _ = select_layers(km, layers, model)
    specs = {r.path: load_spec(model, layer=r.path, config=config) for r in chosen}  # the loaders' view
    source = input_source(km, inputs, samples, time_steps, seed)
    offset, arrays = next(source.batches(samples))
    masks = mask_sources_of(model, config)
    with km.capture(list(specs)) as run:
        captured = run(arrays)
    versions = km.versions
    stem = _slug(Path(model).name)
    out = []
    for path, spec in specs.items():
        cap = captured[path]
        names = output_names(spec, len(cap.outputs))
        init = None if cap.initial_state is None else tuple(np.asarray(s) for s in cap.initial_state)
        call = Call(np.asarray(cap.x), cap.mask, init,
                    {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, cap.outputs, strict=True)})
        policy = layer_policy(spec)
        n = int(cap.x.shape[0])
        out.append(Fixture(
            id=f"{stem}-{_slug(path)}-data", spec=dataclasses.replace(spec, provenance={"semantics": spec.semantics}),
            calls=(call,), output_names=names, tolerance=TOLERANCES[policy], tolerance_policy=policy,
            flags={"model": Path(model).name, "layer": path, "real_data": True, "samples": n,
                   "time": int(cap.x.shape[1]), "masked": cap.mask is not None, "mask_source": masks.get(path, ""),
                   "initial_state": init is not None},
            provenance={**provenance(versions, seed, "the whole model run by Keras on the data (the layer's call "
                                     "recorded as Keras made it), compiled where TensorFlow is the backend, CPU"),
                        "model_file": Path(model).name, "model_keras_version": km.info.get("keras_version"),
                        "semantics": spec.semantics,
                        "inputs": Path(inputs).name if inputs is not None else source.description,
                        "inputs_sha256": source.sha256,
                        "samples_recorded": n, "first_sample": offset},
        ))
    return out
