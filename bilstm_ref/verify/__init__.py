"""Verifying a user's saved model on the user's data: every LSTM / Bidirectional(LSTM), against the
Keras that runs the model (:func:`verify_model`)."""

from .inputs import InputSpec as InputSpec
from .model import LayerVerdict as LayerVerdict
from .model import VerifyResult as VerifyResult
from .model import verify_model as verify_model
from .stats import OutputStats as OutputStats
