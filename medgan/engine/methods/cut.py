"""CUT and FastCUT: contrastive unpaired translation (Park, Efros, Zhang & Zhu, ECCV 2020).

One generator ``G`` (A -> B), no inverse and no cycle.  A patch of ``G(x)`` must be more like the
patch of ``x`` at the same place than like the other patches of ``x`` (PatchNCE): at several layers
of ``G``'s own encoder, features are sampled at ``num_patches`` random places, projected by a small
MLP head per layer (Linear, ReLU, Linear; L2-normalised), and scored with an InfoNCE loss at
temperature ``nce_temperature``: the same place in the input is the positive, the other sampled
places of the same image are the negatives.  The input's features (the keys) are detached.  An
adversarial term from the PatchGAN on B makes ``G(x)`` look like B.

=================== ============ =============== =========================================
``variant``         lambda_nce   identity NCE    flip equivariance
=================== ============ =============== =========================================
``cut`` (default)   1            yes: NCE(G(y), y) for real B, averaged with NCE(G(x), x)
``fastcut``         10           no              yes (the input is flipped at random and
                                                 the output's features flipped back)
=================== ============ =============== =========================================

``model.method_args`` (all optional; ``variant`` sets the defaults of the next three):

* ``variant``: ``cut`` | ``fastcut``;
* ``lambda_nce``, ``nce_idt``, ``flip_equivariance``: as in the table;
* ``nce_layers``: names of the generator's submodules whose outputs are compared (default: the
  generator's declared ``encoder_layers``, :mod:`medgan.nets.features`: for the ResNet the padded
  input, each down-sampling convolution, the first and the middle residual block, as in the paper);
* ``num_patches`` (256), ``nce_temperature`` (0.07), ``projection_dim`` (256).

The adversarial term is weighted by ``loss.lambda_adversarial`` (1); ``loss.lambda_structure`` adds the
gradient-correlation term between ``x`` and ``G(x)``.  As in the paper the discriminator is updated first,
on this step's translations (no image pool: ``optim.pool_size`` is not used).  The model file holds ``G``
only (the MLP heads are training-only), so ``translate --qa-map`` is not available.

Per step the generator runs once on A (and B, for identity NCE) with the keys collected on the way, and
once as an encoder only on its outputs: about a third of CycleGAN's six full generator passes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medgan.engine.methods.base import GANModel, register_model
from medgan.errors import ConfigError
from medgan.losses import LossTerm, Objective, adversarial_term, structure_term
from medgan.losses.adversarial import gradient_penalty
from medgan.nets import build_discriminator, encoder_layers, forward_features

VARIANTS = {"cut": {"lambda_nce": 1.0, "nce_idt": True, "flip_equivariance": False},
            "fastcut": {"lambda_nce": 10.0, "nce_idt": False, "flip_equivariance": True}}


class PatchProjector(nn.Module):
    """Samples feature vectors at random places of each layer's map and projects them (one MLP head per layer).

    Args:
        channels: the feature channels of each layer.
        dim: the projection's width (the paper's 256).
    """

    def __init__(self, channels: Sequence[int], dim: int = 256):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels)
        for m in self.heads.modules():
            if isinstance(m, nn.Linear):             # normal(0, 0.02) as the generator's convolutions
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int,
                places: Sequence[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(projections, places)``: per layer a ``(batch * n, dim)`` unit-norm tensor and the sampled indices.

        The same places are used for every image of the batch; pass ``places`` to sample the keys' places again.
        """
        out, used = [], []
        for i, (f, head) in enumerate(zip(feats, self.heads, strict=True)):
            flat = f.flatten(2).transpose(1, 2)                        # (batch, voxels, channels)
            idx = places[i] if places is not None else torch.randperm(flat.shape[1], device=f.device)[:num_patches]
            x = head(flat[:, idx].flatten(0, 1))
            out.append(x / (x.norm(dim=1, keepdim=True) + 1e-7))
            used.append(idx)
        return out, used


def patch_nce(queries: Sequence[torch.Tensor], keys: Sequence[torch.Tensor], batch: int,
              temperature: float) -> torch.Tensor:
    """PatchNCE: mean over layers of the cross-entropy of each query against its key and the other keys.

    Args:
        queries, keys: per layer ``(batch * n, dim)`` projections of the output and of the input at the
            same places; keys are detached (no gradient flows through the input's features).
        batch: the number of images; negatives come from the same image only.
        temperature: the softmax temperature (0.07).

    For each query the logits are (positive, the n similarities with the image's keys with the positive's
    own entry set to -10), divided by the temperature; the target is the positive.
    """
    losses = []
    for q, k in zip(queries, keys, strict=True):
        q = q.float().reshape(batch, -1, q.shape[-1])
        k = k.detach().float().reshape(batch, -1, k.shape[-1])
        sim = torch.bmm(q, k.transpose(1, 2))                            # (batch, n, n)
        n = sim.shape[1]
        positive = sim.diagonal(dim1=1, dim2=2).unsqueeze(-1)
        negative = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), -10.0)
        logits = torch.cat([positive, negative], dim=2).flatten(0, 1) / temperature
        losses.append(F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=q.device)))
    return torch.stack(losses).mean()


class CUTGenerator(nn.Module):
    """``g_ab`` and the projection heads, run together in one forward (one DDP forward per step).

    Args:
        g_ab: the generator.
        projector: the MLP heads, one per layer of ``layers``.
        layers: the names of ``g_ab``'s submodules whose features are compared.
        num_patches: places sampled per layer and image.
        nce_idt: also translate real B (identity NCE).
        flip_equivariance: flip the input along its last axis with probability 1/2.
    """

    def __init__(self, g_ab: nn.Module, projector: PatchProjector, layers: Sequence[str], num_patches: int,
                 nce_idt: bool, flip_equivariance: bool):
        super().__init__()
        self.g_ab, self.projector = g_ab, projector
        self.layers, self.num_patches = list(layers), int(num_patches)
        self.nce_idt, self.flip_equivariance = bool(nce_idt), bool(flip_equivariance)

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        n = real_a.shape[0]
        real = torch.cat([real_a, real_b]) if self.nce_idt else real_a
        flipped = self.flip_equivariance and bool(torch.rand(()) < 0.5)
        source = real.flip(-1) if flipped else real
        fake, keys = forward_features(self.g_ab, source, self.layers, stop=False)
        if flipped:      # the keys are the unflipped input's features
            keys = forward_features(self.g_ab, real, self.layers)
        queries = forward_features(self.g_ab, fake, self.layers)
        if flipped:
            queries = [q.flip(-1) for q in queries]
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {"fake_b": fake[:n]}
        for name, part in (("a", slice(None, n)), ("b", slice(n, None))):
            if name == "b" and not self.nce_idt:
                break
            k, places = self.projector([f[part] for f in keys], self.num_patches)
            q, _ = self.projector([f[part] for f in queries], self.num_patches, places)
            out[f"nce_k_{name}"], out[f"nce_q_{name}"] = k, q
        return out


class SingleDiscriminator(nn.Module):
    """The PatchGAN on domain B."""

    def __init__(self, d_b: nn.Module):
        super().__init__()
        self.d_b = d_b

    def forward(self, x):
        return self.d_b(x)


@register_model("cut")
class CUT(GANModel):
    """Unpaired A -> B with one generator: adversarial + PatchNCE (+ identity NCE, + structure)."""

    stream = "unpaired"
    directions = ("A->B",)
    d_loss_names = ("d_b",)
    monitor_names = ("d_acc", "var_ratio", "change")
    default_args = {"variant": "cut", "lambda_nce": None, "nce_idt": None, "flip_equivariance": None,
                    "nce_layers": None, "num_patches": 256, "nce_temperature": 0.07, "projection_dim": 256}

    def build(self, m):
        a = self.args
        if a["variant"] not in VARIANTS:
            raise ConfigError(f"model.method_args.variant must be one of {', '.join(VARIANTS)}, not {a['variant']!r}")
        for key, value in VARIANTS[a["variant"]].items():
            if a[key] is None:
                a[key] = value
        if a["lambda_nce"] < 0 or a["num_patches"] < 1 or a["nce_temperature"] <= 0 or a["projection_dim"] < 1:
            raise ConfigError("model.method_args: lambda_nce must be >= 0, num_patches and projection_dim >= 1, "
                              "nce_temperature > 0")
        g_ab = self._generator(m)
        layers = list(a["nce_layers"] or encoder_layers(g_ab))
        with torch.no_grad():               # the heads' input widths: one encoder pass on a small input
            probe = torch.zeros(1, int(m.context_slices), *([8] * m.spatial_dims))
            channels = [f.shape[1] for f in forward_features(g_ab, probe, layers)]
        gen = CUTGenerator(g_ab, PatchProjector(channels, int(a["projection_dim"])), layers, a["num_patches"],
                           a["nce_idt"], a["flip_equivariance"])
        d_args = {"in_channels": int(m.context_slices), **m.discriminator_args}
        return gen, SingleDiscriminator(build_discriminator(m.discriminator, m.spatial_dims, **d_args))

    def objective(self) -> Objective:
        L, a = self.cfg.loss, self.args
        # the paper: lambda_nce x NCE, or lambda_nce x (NCE + NCE_Y) / 2 with identity NCE
        w = a["lambda_nce"] / 2 if a["nce_idt"] else a["lambda_nce"]
        return Objective([
            adversarial_term("g_adv", L.lambda_adversarial, self.adv,
                             lambda t: [self.disc(self._noisy(t["fake_b"], t["sigma"]))]),
            LossTerm("nce", w, lambda t: self._nce(t, "a"), always=True),
            LossTerm("nce_y", w if a["nce_idt"] else 0.0, lambda t: self._nce(t, "b")),
            structure_term("structure", L.lambda_structure, [("real_a", "fake_b")]),
        ])

    def _nce(self, t, domain: str) -> torch.Tensor:
        return patch_nce(t[f"nce_q_{domain}"], t[f"nce_k_{domain}"], t["real_a"].shape[0],
                         self.args["nce_temperature"])

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        L = self.cfg.loss
        real_a, real_b, sigma = self._begin_generator_step(batch)
        with self._autocast():
            out = self.gen_fwd(real_a, real_b)
        # ---- discriminator first (as the paper's code), on this step's translations ----
        self.disc.requires_grad_(True)
        fake_b = out["fake_b"].detach()
        n = real_b.shape[0]
        for _ in range(self.d_steps):
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                pred = self.disc_fwd(self._noisy(torch.cat([real_b, fake_b]), sigma))
                if L.adversarial == "wgan-gp":
                    loss_d = self.adv(pred[:n], True, True) + self.adv(pred[n:], False, True)
                    loss_d = loss_d + gradient_penalty(self.disc.d_b, real_b, fake_b, L.gp_weight)
                else:
                    loss_d = 0.5 * (self.adv(pred[:n], True, True) + self.adv(pred[n:], False, True))
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            self.scaler.update()
        # ---- generator: adversarial against the updated discriminator, PatchNCE ----
        self.disc.requires_grad_(False)
        with self._autocast():
            loss_g, logs = self.g_objective({"real_a": real_a, "real_b": real_b, "sigma": sigma, **out})
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        logs["d_acc"] = self._d_accuracy([(pred, n)])
        with torch.no_grad():
            logs["change"] = (fake_b.float() - real_a).abs().mean()
            if n > 1:
                logs["var_ratio"] = fake_b.float().std(0).mean() / real_a.float().std(0).mean().clamp_min(1e-6)
        logs.update({"g_total": loss_g, "d_b": loss_d})
        return self._finish_step(logs)
