"""Every escape and warning the fuzz campaign found, kept as its reproducer and replayed.

The first 100,000-input campaign (``benchmarks/fuzz.py --seed 1``) found 1,291 escapes and 31 warnings in 19
distinct places, the second (``--seed 2``, after the fixes) one hang and the third (``--seed 3``) one warning; one reproducer per place (a few for the busiest) is under ``tests/data/fuzz/findings``:
the mutated file(s) and the campaign's record (target, seed file, mutation, what escaped). Each is replayed
here exactly as in the campaign (a child process with a time and memory bound) and must now load, or be
refused with the named :class:`bilstm_ref.BilstmRefError`, with no warning.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if not hasattr(os, "fork"):
    pytest.skip("the fuzz harness forks a child per input (os.fork)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz  # noqa: E402

FINDINGS = ROOT / "tests" / "data" / "fuzz" / "findings"

#: record -> (what escaped before the fix, what it is now: "loaded" or the error class)
EXPECTED = {
    "converted-119": ("tokenize.TokenError from numpy's .npy header parser", "CorruptFileError"),
    "converted-49523": ("DeprecationWarning (invalid escape) from numpy's .npy header parser", "CorruptFileError"),
    "converted-11303": ("RuntimeWarning: invalid value in cast (a signalling NaN) in set_weights", "loaded"),
    "converted-9899": ("RuntimeWarning: invalid value in cast (a signalling NaN) merging ONNX biases", "loaded"),
    "converted-9947": ("TypeError sorting ONNX op types of mixed bytes and str", "UnsupportedModelError"),
    "converted-2933": ("UnicodeDecodeError decoding the ONNX direction attribute", "loaded"),
    "keras-402": ("ValueError from float() of a string dropout rate", "ConfigError"),
    "keras-16560": ("TypeError from float() of a list recurrent_dropout rate", "ConfigError"),
    "keras-41304": ("AttributeError: a non-string layer name", "ConfigError"),
    "keras-1152": ("TypeError: an unhashable class_name in check_safe", "CorruptFileError"),
    "keras-11382": ("TypeError: an unhashable model class_name", "UnsupportedModelError"),
    "keras-690": ("AttributeError: a mask tensor whose config is not an object", "loaded"),
    "weights-h5-12561": ("TypeError sorting HDF5 link names of mixed bytes and str", "ShapeMismatchError"),
    "fixture-1180": ("ValueError from float() of a string dropout rate", "ConfigError"),
    "fixture-934": ("TypeError: a layer config without units", "ConfigError"),
    "fixture-17374": ("AttributeError: a non-string layer name", "ConfigError"),
    "fixture-2086": ("TypeError: an unhashable array dtype in the manifest", "FixtureIntegrityError"),
    "fixture-89764": ("AssertionError: output_names disagree with return_state", "FixtureIntegrityError"),
    "fixture-92824": ("AssertionError: a list as return_state", "ConfigError"),
    "fixture-15676": ("RuntimeWarning: invalid value in cast (a signalling NaN input)", "loaded"),
    # the second campaign (--seed 2, after the fixes above): 1 hang in 100,000 inputs
    "legacy-h5-k2-90529": ("hang: listing the root group's attributes fails in the prober, but reading 'backend' "
                           "by name loops in HDF5", "ResourceLimitError"),
    # the third (--seed 3): 1 warning in 100,000 inputs
    "fixture-71566": ("RuntimeWarning: invalid value in cast (a signalling NaN in a recorded output, compared)",
                      "loaded"),
}
TARGETS = {t.name: t for t in fuzz.default_targets()}


def test_every_saved_finding_is_listed():
    saved = sorted(p.stem for p in FINDINGS.glob("*.json") if not p.stem.endswith((".manifest", ".config")))
    assert saved == sorted(EXPECTED)


@pytest.mark.parametrize("record", sorted(EXPECTED))
def test_a_fuzz_finding_stays_fixed(record):
    target = TARGETS[record.rsplit("-", 1)[0]]
    why = target.unavailable()
    if why is not None:
        pytest.skip(f"the {target.name} target cannot run here: {why}")
    (replayed,) = fuzz.replay(FINDINGS / f"{record}.json", echo=None)
    before, now = EXPECTED[record]
    assert replayed.was in ("escape", "warning", "hang"), before
    outcome = replayed.now
    assert outcome.outcome not in fuzz.FINDINGS, f"{before}: still {outcome.outcome}: {outcome.message}"
    if now == "loaded":
        assert outcome.outcome == "loaded", outcome.message
    else:
        assert outcome.outcome == "refused" and outcome.error_class == now, (outcome.outcome, outcome.message)
