"""Suites: many cases run and tallied, over worker processes.

``harness`` (the matrix or recorded fixtures on one implementation, with an expected-failures
list; the records the reports share), ``backends`` (the matrix on every installed Keras
backend), ``converters`` (the converter suite through each converter and its runtime) and
``migration`` (Keras 2 against Keras 3, case by case).
"""
