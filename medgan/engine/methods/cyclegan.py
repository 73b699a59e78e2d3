"""CycleGAN (Zhu et al. 2017): unpaired A <-> B with two generators and two PatchGAN discriminators.

Generator objective: adversarial + ``loss.lambda_cycle`` x cycle consistency + ``loss.lambda_identity``
x identity + ``loss.lambda_structure`` x gradient correlation (:mod:`medgan.losses.terms`).  Each
generator/discriminator pair is one ``nn.Module`` with a single forward per optimisation step, which is
what PyTorch DDP expects (several forwards through a DDP module before one backward are not supported
without ``static_graph``).  The model file holds both generators, so ``translate --qa-map`` can map the
cycle error.
"""
from __future__ import annotations

import torch
from torch import nn

from medgan.engine.methods.base import GANModel, register_model
from medgan.losses import Objective, adversarial_term, l1_term, structure_term
from medgan.losses.adversarial import gradient_penalty
from medgan.nets import build_discriminator


class GeneratorPair(nn.Module):
    """``g_ab`` and ``g_ba``, run together: translations, reconstructions and (optionally) identities."""

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


@register_model("cyclegan")
class CycleGAN(GANModel):
    """Unpaired A <-> B: two generators, two PatchGANs, adversarial + cycle + identity (+ structure)."""

    stream = "unpaired"
    directions = ("A->B", "B->A")
    d_loss_names = ("d_a", "d_b")
    monitor_names = ("d_acc", "var_ratio", "change")

    def build(self, m):
        gens = [self._generator(m) for _ in range(2)]
        d_args = {"in_channels": int(m.context_slices), **m.discriminator_args}
        discs = [build_discriminator(m.discriminator, m.spatial_dims, **d_args) for _ in range(2)]
        return GeneratorPair(*gens), DiscriminatorPair(*discs)

    def objective(self) -> Objective:
        L = self.cfg.loss
        return Objective([
            adversarial_term("g_adv", 1.0, self.adv, self._discriminate_fakes),
            l1_term("cycle", L.lambda_cycle, [("rec_a", "real_a"), ("rec_b", "real_b")], always=True),
            l1_term("identity", L.lambda_identity, [("idt_b", "real_b"), ("idt_a", "real_a")]),
            structure_term("structure", L.lambda_structure, [("real_a", "fake_b"), ("real_b", "fake_a")]),
        ])

    def _discriminate_fakes(self, t):
        pred_fake_a, pred_fake_b = self.disc(self._noisy(t["fake_a"], t["sigma"]), self._noisy(t["fake_b"], t["sigma"]))
        return pred_fake_b, pred_fake_a

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        L = self.cfg.loss
        real_a, real_b, sigma = self._begin_generator_step(batch)
        with self._autocast():
            out = self.gen_fwd(real_a, real_b, identity=self.g_objective.active("identity"))
            loss_g, logs = self.g_objective({"real_a": real_a, "real_b": real_b, "sigma": sigma, **out})
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
