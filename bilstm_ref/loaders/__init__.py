"""Loaders: model files and live Keras layers to layer specs (see :mod:`.files`, :mod:`bilstm_ref.loaders.live`)."""

from .files import inspect_file as inspect_file
from .files import load as load
from .files import load_spec as load_spec
