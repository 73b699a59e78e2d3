"""Experiment configuration: typed dataclasses loaded from YAML."""
from medgan.config.loader import apply_overrides, config_from_dict, config_to_dict, load_config
from medgan.config.schema import DataConfig, ExperimentConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig

__all__ = ["ExperimentConfig", "ModelConfig", "DataConfig", "LossConfig", "OptimConfig", "TrainConfig",
           "load_config", "config_from_dict", "config_to_dict", "apply_overrides"]
