"""Experiment configuration: typed dataclasses loaded from YAML."""
from medgan.config.schema import (DataConfig, ExperimentConfig, LossConfig, ModelConfig, OptimConfig,
                                  TrainConfig)
from medgan.config.loader import apply_overrides, config_to_dict, load_config, config_from_dict

__all__ = ["ExperimentConfig", "ModelConfig", "DataConfig", "LossConfig", "OptimConfig", "TrainConfig",
           "load_config", "config_from_dict", "config_to_dict", "apply_overrides"]
