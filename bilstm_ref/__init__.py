"""bilstm_ref: a NumPy reference of Keras ``LSTM`` and ``Bidirectional(LSTM)`` and a conformance matrix.

Public names only; importing this package never imports Keras or TensorFlow.
"""

from . import _aliases
from .reference.bidirectional import Bidirectional as Bidirectional
from .diagnose import explain as explain
from .diagnose import trace as trace
from .errors import BilstmRefError as BilstmRefError
from .errors import ConfigError as ConfigError
from .errors import CorruptFileError as CorruptFileError
from .errors import DTypeMismatchError as DTypeMismatchError
from .errors import FileAccessError as FileAccessError
from .errors import InputDataError as InputDataError
from .errors import KerasModelError as KerasModelError
from .errors import KerasUnavailableError as KerasUnavailableError
from .errors import ResourceLimitError as ResourceLimitError
from .errors import ShapeMismatchError as ShapeMismatchError
from .errors import StateError as StateError
from .errors import UnsafeModelError as UnsafeModelError
from .errors import UnsupportedModelError as UnsupportedModelError
from .loaders.live import from_keras as from_keras
from .loaders import inspect_file as inspect_file
from .loaders import load as load
from .loaders import load_spec as load_spec
from .loaders.live import spec_from_keras as spec_from_keras
from .reference.lstm import LSTM as LSTM
from .reference.spec import LayerSpec as LayerSpec
from .reference.spec import build as build
from .reference.spec import reference_factory as reference_factory
from .testing import assert_matches_keras as assert_matches_keras
from .verify import LayerVerdict as LayerVerdict
from .verify import VerifyResult as VerifyResult
from .verify import verify_model as verify_model

from ._version import __version__ as __version__

_aliases.install()
