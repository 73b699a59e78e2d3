"""The HU presets, for the data layer's users: they are defined in :mod:`medgan.config.hu`, one layer down,
because the configuration loader validates ``data.hu_preset`` and must not import the data layer."""
from medgan.config.hu import HU_PRESETS, HUPreset, get_preset

__all__ = ["HU_PRESETS", "HUPreset", "get_preset"]
