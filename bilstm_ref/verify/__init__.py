"""Verifying a user's saved model on the user's data: every LSTM / Bidirectional(LSTM), against the
Keras that runs the model (:func:`verify_model`); and a converted model against Keras and the reference
(:func:`verify_converted`)."""

from .converted import BatteryItem as BatteryItem
from .converted import ConversionResult as ConversionResult
from .converted import verify_converted as verify_converted
from .inputs import InputSpec as InputSpec
from .model import LayerVerdict as LayerVerdict
from .model import VerifyResult as VerifyResult
from .model import verify_model as verify_model
from .stats import OutputStats as OutputStats
