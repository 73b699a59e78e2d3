"""Training methods: one registered class per file (:func:`register_model`), named by ``model.method``.

Importing this package registers the built-in methods.  A new method is one file here with a
``@register_model("name")`` class, and its name in the registration import below
(docs/architecture.md, "How to add a method").
"""
from medgan.engine.methods import cut, cyclegan, paired, subtraction  # noqa: F401  (registration side effect)
from medgan.engine.methods.base import METHODS, GANModel, build_model, register_model

__all__ = ["METHODS", "GANModel", "build_model", "register_model"]
