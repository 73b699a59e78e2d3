"""Networks. Importing this package registers the built-in architectures."""
from medgan.nets import discriminators, enhancement, generators  # noqa: F401  (registration side effect)
from medgan.nets.correction import CorrectionGenerator, build_translator
from medgan.nets.features import encoder_layers, forward_features
from medgan.nets.registry import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    register_discriminator,
    register_generator,
)

__all__ = ["CorrectionGenerator", "build_translator", "encoder_layers", "forward_features",
           "GENERATORS", "DISCRIMINATORS", "build_generator", "build_discriminator",
           "register_generator", "register_discriminator"]
