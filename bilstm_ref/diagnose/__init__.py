"""Diagnosis: gate-level traces (:mod:`.trace`), the known porting faults (:mod:`.faults`), the first
divergence and ranked diagnosis of a failing implementation (:mod:`.explain`), and minimal repros
(:mod:`.shrink`).

Importing this package does not import Keras.
"""

from .explain import Explanation as Explanation
from .explain import explain as explain
from .faults import FAULTS as FAULTS
from .trace import DirectionTrace as DirectionTrace
from .trace import Trace as Trace
from .trace import TraceMismatchError as TraceMismatchError
from .trace import check_trace as check_trace
from .trace import save_traces as save_traces
from .trace import trace as trace
from .trace import trace_case as trace_case
from .trace import trace_main as trace_main

__all__ = ["Trace", "DirectionTrace", "TraceMismatchError", "trace", "check_trace", "trace_case", "save_traces",
           "trace_main", "explain", "Explanation", "FAULTS"]
