"""The CycleGAN model: two generators, two PatchGAN discriminators and one training step.

Each generator/discriminator pair is one ``nn.Module`` with a single forward per
optimisation step, which is what PyTorch DDP expects (several forwards through a
DDP module before one backward are not supported without ``static_graph``).
"""
from __future__ import annotations

import torch
from torch import nn

from medgan.config import ExperimentConfig
from medgan.engine.pool import ImagePool
from medgan.errors import ConfigError
from medgan.inference.engine import autocast
from medgan.losses import AdversarialLoss, gradient_correlation_loss
from medgan.losses.adversarial import gradient_penalty, instance_noise_std
from medgan.nets import build_discriminator, build_translator


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """normal(0, 0.02) initialisation of the reference CycleGAN."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class GeneratorPair(nn.Module):
    def __init__(self, g_ab: nn.Module, g_ba: nn.Module):
        super().__init__()
        self.g_ab, self.g_ba = g_ab, g_ba

    def forward(self, real_a, real_b, identity: bool):
        fake_b = self.g_ab(real_a)
        fake_a = self.g_ba(real_b)
        out = {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.g_ba(fake_b), "rec_b": self.g_ab(fake_a)}
        if identity:
            out["idt_b"] = self.g_ab(real_b)
            out["idt_a"] = self.g_ba(real_a)
        return out


class DiscriminatorPair(nn.Module):
    def __init__(self, d_a: nn.Module, d_b: nn.Module):
        super().__init__()
        self.d_a, self.d_b = d_a, d_b

    def forward(self, x_a, x_b):
        return self.d_a(x_a), self.d_b(x_b)


def linear_decay(total: int, decay_start: int):
    """LR factor: 1 until ``decay_start``, then linearly to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - decay_start) / max(1, total - decay_start))

    return factor


class GANModel:
    """What every medgan GAN shares: optimisers with the constant-then-linear LR, AMP,
    channels_last, DDP/compile wrapping, the adversarial loss with its stabilisers, state.

    Subclasses build ``self.gen`` (holding ``g_ab``, and ``g_ba`` for CycleGAN) and
    ``self.disc`` in :meth:`build` and implement :meth:`train_step`.
    """

    def __init__(self, cfg: ExperimentConfig, device: torch.device, distributed: bool = False):
        self.cfg, self.device = cfg, device
        o, L = cfg.optim, cfg.loss
        self.gen, self.disc = self.build(cfg.model)
        dims = cfg.model.spatial_dims
        for net in (self.gen, self.disc):
            init_weights(net)
            net.to(device)
            if cfg.train.channels_last and device.type == "cuda":
                net.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2))
        decay_start = o.decay_start if o.decay_start is not None else o.steps // 2
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, linear_decay(o.steps, decay_start))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, linear_decay(o.steps, decay_start))
        self.pools = {"pool_a": ImagePool(o.pool_size), "pool_b": ImagePool(o.pool_size)}
        self.adv = AdversarialLoss(L.adversarial, L.label_smoothing, L.label_noise)
        self.d_steps = o.n_critic if L.adversarial == "wgan-gp" else o.d_steps
        if self.d_steps < 1:
            raise ConfigError("optim.d_steps and optim.n_critic must be at least 1")
        #: logits above this count as "real" when measuring discriminator accuracy
        self.real_threshold = 0.5 if L.adversarial == "lsgan" else 0.0
        amp = cfg.train.amp if device.type == "cuda" else "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.gen_fwd, self.disc_fwd = self.gen, self.disc
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.gen_fwd = DDP(self.gen, device_ids=ids)
            self.disc_fwd = DDP(self.disc, device_ids=ids)
        if cfg.train.compile:
            self.gen_fwd = torch.compile(self.gen_fwd)
            self.disc_fwd = torch.compile(self.disc_fwd)
        self.step = 0

    def build(self, m) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def _generator(self, m) -> nn.Module:
        """A translation or correction generator (medgan.nets.correction), as ``model.output`` says."""
        from medgan.data.hu import get_preset

        preset = get_preset(self.cfg.data.hu_preset)
        return build_translator(m, self.cfg.data.spacing, preset.hi - preset.lo)

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

    def _d_accuracy(self, preds) -> float:
        """Mean accuracy of the discriminators on (logits, n_real) pairs: real above the threshold, fake below."""
        t = self.real_threshold
        with torch.no_grad():
            acc = [0.5 * ((p[:n].float() > t).float().mean() + (p[n:].float() <= t).float().mean()) for p, n in preds]
        return sum(acc) / len(acc)

    def _finish_step(self, logs: dict) -> dict[str, float]:
        self.sched_g.step()
        self.sched_d.step()
        self.step += 1
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()}

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


class CycleGAN(GANModel):
    """Unpaired A <-> B: two generators, two PatchGANs, adversarial + cycle + identity (+ structure)."""

    def build(self, m):
        gens = [self._generator(m) for _ in range(2)]
        d_args = {"in_channels": int(m.context_slices), **m.discriminator_args}
        discs = [build_discriminator(m.discriminator, m.spatial_dims, **d_args) for _ in range(2)]
        return GeneratorPair(*gens), DiscriminatorPair(*discs)

    def train_step(self, batch: dict) -> dict[str, float]:
        L = self.cfg.loss
        real_a, real_b, sigma = self._begin_generator_step(batch)
        with self._autocast():
            out = self.gen_fwd(real_a, real_b, identity=L.lambda_identity > 0)
            pred_fake_a, pred_fake_b = self.disc(self._noisy(out["fake_a"], sigma), self._noisy(out["fake_b"], sigma))
            loss_gan = self.adv(pred_fake_b, True, False) + self.adv(pred_fake_a, True, False)
            loss_cycle = (out["rec_a"].float() - real_a).abs().mean() + (out["rec_b"].float() - real_b).abs().mean()
            loss_g = loss_gan + L.lambda_cycle * loss_cycle
            logs = {"g_adv": loss_gan, "cycle": loss_cycle}
            if L.lambda_identity > 0:
                loss_idt = (out["idt_b"].float() - real_b).abs().mean() + (out["idt_a"].float() - real_a).abs().mean()
                loss_g = loss_g + L.lambda_identity * loss_idt
                logs["identity"] = loss_idt
            if L.lambda_structure > 0:
                loss_struct = (gradient_correlation_loss(real_a, out["fake_b"])
                               + gradient_correlation_loss(real_b, out["fake_a"]))
                loss_g = loss_g + L.lambda_structure * loss_struct
                logs["structure"] = loss_struct
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        # ---- discriminators: real and pooled fakes in one forward, d_steps (n_critic) times ----
        self.disc.requires_grad_(True)
        fake_a = self.pool_a.query(out["fake_a"].detach().float()).to(real_a.dtype)
        fake_b = self.pool_b.query(out["fake_b"].detach().float()).to(real_b.dtype)
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        wgan = L.adversarial == "wgan-gp"
        for _ in range(self.d_steps):
            # the extra updates reuse this step's batch and pooled fakes (fresh instance noise each time)
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                pred_a, pred_b = self.disc_fwd(self._noisy(torch.cat([real_a, fake_a]), sigma),
                                               self._noisy(torch.cat([real_b, fake_b]), sigma))
                half = 1.0 if wgan else 0.5
                loss_d_a = half * (self.adv(pred_a[:n_a], True, True) + self.adv(pred_a[n_a:], False, True))
                loss_d_b = half * (self.adv(pred_b[:n_b], True, True) + self.adv(pred_b[n_b:], False, True))
                if wgan:
                    loss_d_a = loss_d_a + gradient_penalty(self.disc.d_a, real_a, fake_a, L.gp_weight)
                    loss_d_b = loss_d_b + gradient_penalty(self.disc.d_b, real_b, fake_b, L.gp_weight)
                loss_d = loss_d_a + loss_d_b
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            self.scaler.update()
        logs["d_acc"] = self._d_accuracy([(pred_a, n_a), (pred_b, n_b)])
        with torch.no_grad():
            logs["change"] = (out["fake_b"].detach().float() - real_a).abs().mean()
            if real_a.shape[0] > 1:
                spread_in = real_a.float().std(0).mean()
                logs["var_ratio"] = out["fake_b"].detach().float().std(0).mean() / spread_in.clamp_min(1e-6)
        logs.update({"g_total": loss_g, "d_a": loss_d_a, "d_b": loss_d_b})
        return self._finish_step(logs)
