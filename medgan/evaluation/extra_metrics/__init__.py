"""Metrics beyond the SynthRAD protocols' own columns, one module each.

Every module here is imported by :mod:`medgan.evaluation.registry` when the registry is first read, and
registers its :class:`~medgan.evaluation.registry.Metric` with
:func:`~medgan.evaluation.registry.register_metric`: adding a metric is adding a file here (and its test).
"""
