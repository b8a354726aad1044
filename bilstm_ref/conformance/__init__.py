"""The conformance machinery: what a case is and how one is judged.

``matrix`` (the flag-combination cases as data, their ids and the known Keras deviations),
``pairwise`` (all-pairs selection), ``oracle`` (Keras's answer for a case; the only module here
that imports Keras, lazily), ``judge`` (runs an implementation on a case's calls and judges it
output by output) and ``compare`` (the tolerance model and comparison results).
"""
