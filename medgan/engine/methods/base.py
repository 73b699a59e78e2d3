"""What every training method shares, and the registry that names them in configs (``model.method``).

A method is one class registered with :func:`register_model`.  It declares

* how it builds its networks (:meth:`GANModel.build`: the generator module, holding ``g_ab`` and the
  method's other trained parts, and the discriminator module);
* its data stream (:attr:`GANModel.stream`: ``"unpaired"`` or ``"paired"``, :mod:`medgan.data.streams`);
* its generator objective (:meth:`GANModel.objective`: a list of :mod:`medgan.losses.terms`) and so its
  loss names, with its discriminator losses (:attr:`GANModel.d_loss_names`) and monitors;
* one optimisation step (:meth:`GANModel.train_step`, returning ``{name: scalar tensor}``);
* its export (:attr:`GANModel.directions` and :meth:`GANModel.export_tensors`: what goes into the model
  file, read back by :mod:`medgan.inference` through :mod:`medgan.io.model_file`).

The trainer, its logs, the loss-curve figure and validation use only these, never the method's name.

>>> @register_model("my-method")
... class MyMethod(GANModel):
...     def build(self, m): ...
...     def objective(self): ...
...     def train_step(self, batch): ...
>>> build_model(cfg, torch.device("cpu"))      # cfg.model.method == "my-method"
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from medgan.config import ExperimentConfig
from medgan.engine.pool import ImagePool
from medgan.errors import ConfigError
from medgan.inference.runner import autocast
from medgan.io.model_file import GENERATOR_PREFIXES
from medgan.losses import AdversarialLoss, Objective
from medgan.losses.adversarial import instance_noise_std
from medgan.nets import build_translator

#: registered methods, name -> class (:func:`register_model`)
METHODS: dict[str, type[GANModel]] = {}


def register_model(name: str) -> Callable[[type[GANModel]], type[GANModel]]:
    """Class decorator: ``model.method: NAME`` in a config builds this class."""

    def deco(cls: type[GANModel]) -> type[GANModel]:
        if name in METHODS:
            raise ValueError(f"training method '{name}' is already registered")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def build_model(cfg: ExperimentConfig, device: torch.device, distributed: bool = False) -> GANModel:
    """The registered method ``cfg.model.method``, built on ``device``."""
    method = cfg.model.method
    if method not in METHODS:
        raise ConfigError(f"unknown model.method '{method}'; choose from {', '.join(sorted(METHODS))}")
    return METHODS[method](cfg, device, distributed)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """normal(0, 0.02) initialisation of the reference CycleGAN."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def linear_decay(total: int, decay_start: int):
    """LR factor: 1 until ``decay_start``, then linearly to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - decay_start) / max(1, total - decay_start))

    return factor


def sync_batch_norm(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` with its batch norms synchronised across DDP processes (``nn.SyncBatchNorm``).

    Unsynchronised, each process would normalise by the statistics of its own share of the batch,
    and the model would depend on the number of GPUs. The parameters and buffers keep their names,
    so checkpoints and model files are unchanged. PyTorch synchronises batch norm on GPUs only: on
    CPU (gloo) a network with batch norm is refused.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return net
    if device.type == "cpu":
        raise ConfigError("batch norm (generator_args.norm: batch) under DDP needs GPUs: PyTorch synchronises "
                          "it across processes on GPUs only; on CPU train in one process, or use norm: instance")
    synced: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return synced


class GANModel:
    """What every medgan GAN shares: optimisers with the constant-then-linear LR, AMP,
    channels_last, DDP/compile wrapping, the adversarial loss with its stabilisers, state.

    Subclasses (registered with :func:`register_model`) build ``self.gen`` (holding ``g_ab``, and
    ``g_ba`` for methods with an inverse) and ``self.disc`` in :meth:`build`, list their generator
    loss terms in :meth:`objective` and implement :meth:`train_step`.

    Args:
        cfg: the experiment configuration (only this class and its subclasses read it).
        device: where the networks live.
        distributed: wrap the networks in DistributedDataParallel (an initialised process group).
    """

    #: the registered name (``model.method``), set by :func:`register_model`
    name: ClassVar[str] = ""
    #: the training data it needs: "unpaired" (two folders of cases) or "paired" (matched, registered)
    stream: ClassVar[str] = "unpaired"
    #: the translations it exports; each is a generator ``GENERATOR_PREFIXES[direction]`` in :attr:`gen`
    directions: ClassVar[tuple[str, ...]] = ("A->B",)
    #: its discriminator losses (logged, and drawn on the loss-curve figure's discriminator panel)
    d_loss_names: ClassVar[tuple[str, ...]] = ()
    #: further logged values (:mod:`medgan.engine.alarms` watches d_acc, var_ratio and change)
    monitor_names: ClassVar[tuple[str, ...]] = ("d_acc", "change")
    #: its own options and their defaults; ``model.method_args`` overrides them (:attr:`args`), other keys are errors
    default_args: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: ExperimentConfig, device: torch.device, distributed: bool = False):
        self.cfg, self.device = cfg, device
        o, L = cfg.optim, cfg.loss
        self.args = self._method_args(self.default_args)
        self.adv = AdversarialLoss(L.adversarial, L.label_smoothing, L.label_noise)
        self.gen, self.disc = self.build(cfg.model)
        self.g_objective = self.objective()
        dims = cfg.model.spatial_dims
        for net in (self.gen, self.disc):
            init_weights(net)
            net.to(device)
            if cfg.train.channels_last and device.type == "cuda":
                # Module.to takes memory_format (keyword only, documented); torch's overloads omit it
                net.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)  # type: ignore[call-overload]
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2))
        decay_start = o.decay_start if o.decay_start is not None else o.steps // 2
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, linear_decay(o.steps, decay_start))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, linear_decay(o.steps, decay_start))
        self.pools = {"pool_a": ImagePool(o.pool_size), "pool_b": ImagePool(o.pool_size)}
        self.d_steps = o.n_critic if L.adversarial == "wgan-gp" else o.d_steps
        if self.d_steps < 1:
            raise ConfigError("optim.d_steps and optim.n_critic must be at least 1")
        #: logits above this count as "real" when measuring discriminator accuracy
        self.real_threshold = 0.5 if L.adversarial == "lsgan" else 0.0
        amp = cfg.train.amp if device.type == "cuda" else "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        #: the modules the steps call: the networks, wrapped for DDP and/or torch.compile when asked
        self.gen_fwd: Callable[..., Any] = self.gen
        self.disc_fwd: Callable[..., Any] = self.disc
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.gen, self.disc = (sync_batch_norm(net, device) for net in (self.gen, self.disc))
            ids = [device.index] if device.type == "cuda" else None
            self.gen_fwd = DDP(self.gen, device_ids=ids)
            self.disc_fwd = DDP(self.disc, device_ids=ids)
        if cfg.train.compile:
            self.gen_fwd = torch.compile(self.gen_fwd)
            self.disc_fwd = torch.compile(self.disc_fwd)
        self.step = 0

    # ------------------------------------------------------------------ what a method declares
    def build(self, m) -> tuple[nn.Module, nn.Module]:
        """``(generator module, discriminator module)`` for the model config ``m``."""
        raise NotImplementedError

    def objective(self) -> Objective:
        """The generator's loss terms (:mod:`medgan.losses.terms`); called once, after :meth:`build`."""
        raise NotImplementedError

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step on ``{"A": tensor, "B": tensor}``; ``{log name: detached scalar}``."""
        raise NotImplementedError

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The generator's loss terms, before their weights (the objective's order)."""
        return self.g_objective.names

    @property
    def log_names(self) -> tuple[str, ...]:
        """Every value :meth:`train_step` may return, in the order of the training log's columns."""
        return ("g_total", *self.loss_names, *self.d_loss_names, *self.monitor_names)

    @property
    def translator(self) -> nn.Module:
        """The A -> B generator (validation translates with it)."""
        return self.gen.get_submodule(GENERATOR_PREFIXES["A->B"])

    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The model file's tensors: the weights of the generators of :attr:`directions`, under their prefixes."""
        prefixes = {GENERATOR_PREFIXES[d] for d in self.directions}
        return {k: v for k, v in self.gen.state_dict().items() if k.split(".", 1)[0] in prefixes}

    # ------------------------------------------------------------------ shared helpers
    def _generator(self, m) -> nn.Module:
        """A translation or correction generator (medgan.nets.correction), as ``model.output`` says."""
        from medgan.data.hu import get_preset

        preset = get_preset(self.cfg.data.hu_preset)
        return build_translator(m, self.cfg.data.spacing, preset.hi - preset.lo)

    def _method_args(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """``model.method_args`` over ``defaults``; a key the method does not know is a :class:`ConfigError`."""
        given = dict(self.cfg.model.method_args or {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown model.method_args for method '{self.name}': {', '.join(unknown)}; "
                              f"valid: {', '.join(sorted(defaults)) or 'none'}")
        return {**defaults, **given}

    @property
    def pool_a(self) -> ImagePool:
        return self.pools["pool_a"]

    @property
    def pool_b(self) -> ImagePool:
        return self.pools["pool_b"]

    def _autocast(self):
        if self.amp_dtype is None:
            return autocast(self.device, False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _prep(self, x):
        x = x.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last and self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
        return x

    def _noisy(self, x: torch.Tensor, std: float) -> torch.Tensor:
        return x + std * torch.randn_like(x) if std > 0 else x

    def _begin_generator_step(self, batch: dict):
        """Device-ready (real_a, real_b) and this step's instance-noise std; D frozen, G gradients cleared."""
        real_a, real_b = self._prep(batch["A"]), self._prep(batch["B"])
        self.disc.requires_grad_(False)       # D used through the plain module here (no DDP sync)
        self.opt_g.zero_grad(set_to_none=True)
        return real_a, real_b, self._instance_noise()

    def _instance_noise(self) -> float:
        L = self.cfg.loss
        return instance_noise_std(self.step, L.instance_noise, L.instance_noise_steps or self.cfg.optim.steps)

    def _d_accuracy(self, preds) -> torch.Tensor:
        """Mean accuracy of the discriminators on (logits, n_real) pairs: real above the threshold, fake below."""
        t = self.real_threshold
        with torch.no_grad():
            acc = [0.5 * ((p[:n].float() > t).float().mean() + (p[n:].float() <= t).float().mean()) for p, n in preds]
        mean: torch.Tensor = sum(acc) / len(acc)
        return mean

    def _finish_step(self, logs: dict) -> dict[str, torch.Tensor]:
        self.sched_g.step()
        self.sched_d.step()
        self.step += 1
        return {k: v.detach() if torch.is_tensor(v) else torch.tensor(float(v)) for k, v in logs.items()}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "gen": self.gen.state_dict(),
            "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            **{k: p.state_dict() for k, p in self.pools.items()},
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.gen.load_state_dict(state["gen"])
        self.disc.load_state_dict(state["disc"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        for k, p in self.pools.items():
            if k in state:
                p.load_state_dict(state[k], self.device)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
