"""Training data: HU normalisation presets, body masks and unpaired patch queues (TorchIO)."""
from medgan.data.body_mask import body_mask
from medgan.data.hu import HU_PRESETS, HUPreset

__all__ = ["HUPreset", "HU_PRESETS", "body_mask"]
