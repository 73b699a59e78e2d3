"""The configuration schema. Every YAML key maps to one typed field here."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from medgan.errors import ConfigError


def check_spacing(spacing: Sequence[float] | None) -> list[float] | None:
    """``None`` or a validated list of two (x, y) or three (x, y, z) positive spacings in mm (``data.spacing``)."""
    if not spacing:
        return None
    sp = [float(s) for s in spacing]
    if len(sp) not in (2, 3) or min(sp) <= 0:
        raise ConfigError(f"spacing must be two (x, y) or three (x, y, z) positive numbers in mm, got {list(spacing)}")
    return sp


@dataclasses.dataclass
class ModelConfig:
    #: the training method, a registered class (:mod:`medgan.engine.methods`): cyclegan (unpaired, default) |
    #: paired (pix2pix, registered A/B).  ``mode``, its former name, is still read (:func:`medgan.config.load_config`)
    method: str = "cyclegan"
    #: the method's own options (e.g. CUT's PatchNCE layers); each method checks and documents its keys
    method_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    spatial_dims: int = 2
    generator: str = "resnet"
    generator_args: dict[str, Any] = dataclasses.field(default_factory=lambda: {"channels": 64, "n_blocks": 9})
    discriminator: str = "patchgan"
    discriminator_args: dict[str, Any] = dataclasses.field(default_factory=lambda: {"channels": 64, "num_layers": 3})
    #: translation: the generator outputs the image (contrast -> non-contrast, where anatomy's look changes);
    #: correction: it outputs a smooth correction added to its input (CBCT -> CT: shading, cupping, offsets),
    #: so the result keeps the input's edges and fine detail (docs/translate.md)
    output: str = "translation"
    correction_sigma_mm: float = 10.0       #: Gaussian low-pass (sigma, mm) applied to a correction
    correction_max_hu: float | None = None  #: bound on a correction's amplitude (HU); None: up to the preset range
    #: global HU calibration (fitted on the training domains) applied to A before the network:
    #: none | linear | histogram; the network then learns what the calibration leaves
    input_calibration: str = "none"
    context_slices: int = 1                 #: 2.5D: adjacent axial slices fed as channels to a 2D generator (odd)


@dataclasses.dataclass
class DataConfig:
    train_a: str = ""                       #: folder of domain-A volumes (e.g. CBCT, contrast CT)
    train_b: str = ""                       #: folder of domain-B volumes (e.g. CT, non-contrast CT)
    val_a: str | None = None             #: held-out A volumes ...
    val_b: str | None = None             #: ... and their registered B counterparts, matched by file name
    hu_preset: str = "ct-full"
    #: orientation every volume is brought into (exact permutation/flip) for training and translation:
    #: axial slices in DICOM's LPS axes (see medgan.io.orientation); stored with the model
    orientation: str = "LPS"
    sites: list[str] = dataclasses.field(default_factory=list)  #: anatomical sites of the training data (recorded)
    #: voxel size the model works at, mm: [x, y] (in-plane; slice spacing kept) or [x, y, z].
    #: Training volumes are resampled to it; ``translate`` resamples inputs in and back out.
    spacing: list[float] | None = None
    patch_size: list[int] = dataclasses.field(default_factory=lambda: [256, 256])
    samples_per_volume: int = 32
    queue_length: int = 256
    num_workers: int = 0
    flip: bool = True
    affine: bool = False


@dataclasses.dataclass
class LossConfig:
    adversarial: str = "lsgan"              #: lsgan | bce | minimax | hinge | wgan-gp (see medgan.losses)
    gp_weight: float = 10.0                 #: WGAN-GP gradient-penalty weight
    label_smoothing: float = 0.0            #: one-sided: D's real target 1 - s (lsgan/bce/minimax)
    label_noise: float = 0.0                #: soft noisy labels: targets drawn within n of 0/1
    instance_noise: float = 0.0             #: Gaussian std on D inputs (normalised units) at step 0 ...
    instance_noise_steps: int | None = None  #: ... decaying linearly to 0 here (default: optim.steps)
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0            #: 0.5 x lambda_cycle, as in the reference CycleGAN
    lambda_structure: float = 0.0           #: gradient-correlation between input and translation
    lambda_l1: float = 100.0                #: paired method: L1 to the registered target (pix2pix)
    #: weight of the generator's adversarial term, for the methods that read it (paired; CycleGAN's is 1);
    #: 1 as in pix2pix.  0 trains a paired model purely supervised (L1): right for a low-passed correction,
    #: which cannot reproduce the CT's texture that a discriminator would use to tell it apart (docs/training.md)
    lambda_adversarial: float = 1.0


@dataclasses.dataclass
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    steps: int = 100_000
    decay_start: int | None = None       #: step at which the linear LR decay to 0 starts (default: half)
    pool_size: int = 50
    d_steps: int = 1                        #: discriminator updates per generator update
    n_critic: int = 5                       #: the same for wgan-gp (Gulrajani et al. use 5)


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"
    amp: str = "bf16"                       #: bf16 | fp16 | none (autocast on CUDA only)
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = 1000
    val_every: int = 1000
    log_every: int = 50
    max_val_slices: int = 64
    tensorboard: bool = False               #: also write scalars to RUN_DIR/tensorboard (pip install tensorboard)
    alarms: bool = True                     #: D collapse / G divergence / mode collapse warnings
    alarm_patience: int = 50                #: steps a condition must hold before it fires


@dataclasses.dataclass
class ExperimentConfig:
    name: str = "medgan"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
