"""The reference: a NumPy ``LSTM`` and ``Bidirectional(LSTM)`` computing what Keras computes.

``spec`` (the layer spec: config, weights, provenance, and the factory that builds a layer from
it), ``lstm`` (one direction), ``bidirectional`` (the two directions and how they merge),
``activations``, ``dtypes`` (dtype policies) and ``sequence`` (reversal and mask alignment).
Depends on numpy and :mod:`bilstm_ref.errors` only.
"""
