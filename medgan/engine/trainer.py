"""The training loop: data segments, logging, validation, checkpoints, export.

Exact resume: the data stream and every random draw are re-seeded at each
checkpoint step from ``(seed, step, rank)``, so training resumed from a
checkpoint at step S continues exactly as the uninterrupted run does after S.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from medgan.config import ExperimentConfig, config_from_dict, config_to_dict
from medgan.data.body_mask import body_mask
from medgan.data.hu import get_preset
from medgan.data.resample import check_spacing, needs_resampling, resample_to_spacing
from medgan.data.streams import make_loader
from medgan.data.unpaired import PatchSpec
from medgan.engine import checkpoint as ckpt
from medgan.engine.alarms import TrainingAlarms
from medgan.engine.distributed import barrier, init_distributed, shutdown
from medgan.engine.methods import build_model
from medgan.errors import ConfigError, InputError
from medgan.evaluation.metrics import mae, ssim
from medgan.inference.runner import run_generator
from medgan.io import read_volume
from medgan.io.cases import list_volumes, match_pairs
from medgan.io.model_file import ModelSpec, write_model_file
from medgan.io.orientation import to_orientation
from medgan.io.runs import check_fresh_run_dir
from medgan.io.writers import atomic_write_text, remove_stale_temporaries
from medgan.utils.device import resolve_device
from medgan.utils.optional import require
from medgan.utils.progress import bar


def derive_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % 2**31


def validation_pairs(cfg: ExperimentConfig) -> list[tuple[Path, Path]]:
    if not (cfg.data.val_a and cfg.data.val_b):
        return []
    return match_pairs(cfg.data.val_a, cfg.data.val_b)


class Trainer:
    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, resume: bool = False, quiet: bool = False):
        self.cfg, self.run_dir, self.quiet = cfg, Path(run_dir), quiet
        if not cfg.data.train_a or not cfg.data.train_b:
            raise ConfigError("data.train_a and data.train_b must name the two domain folders")
        self.preset = get_preset(cfg.data.hu_preset)
        check_spacing(cfg.data.spacing)
        # an optional extra that is missing: one line before anything is read or written
        summary_writer = (require("torch.utils.tensorboard", "train.tensorboard", "tensorboard", "tensorboard")
                          .SummaryWriter if cfg.train.tensorboard else None)
        self.paths_a, self.paths_b = list_volumes(cfg.data.train_a), list_volumes(cfg.data.train_b)
        self.val_pairs = validation_pairs(cfg)
        self.spec = PatchSpec.from_config(cfg)
        self.spec.torchio_patch_size()  # validates the patch size against spatial_dims
        probe = torch.device("cpu") if cfg.train.device == "cpu" else None
        self.dist = init_distributed(probe or resolve_device(cfg.train.device, quiet=True))
        self.device = resolve_device(cfg.train.device, self.dist.local_rank, quiet=quiet or not self.dist.is_main)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        ckpt.seed_everything(cfg.train.seed)  # same seed, same initial weights on every rank
        self.model = build_model(cfg, self.device, distributed=self.dist.enabled)
        self.alarms = TrainingAlarms(cfg.train.alarm_patience) if cfg.train.alarms else None
        self.tb = None
        if resume:
            self._resume()
        elif self.ckpt_path.exists():
            raise ConfigError(f"{self.run_dir} already holds a training run; add --resume to continue it "
                              "or choose another output folder")
        else:
            check_fresh_run_dir(self.run_dir)     # another run's logs (killed before its first checkpoint)
        # after the run folder is checked: unpaired HU calibrations (baselines, and the input calibration of a
        # correction model) and the training-domain profile, from the training folders: deterministic, so a
        # resumed run refits the same
        from medgan.calibration import HUCalibration, fit_training_domain

        self.training_domain = fit_training_domain(self.paths_a, self.paths_b, cfg.data.spacing, cfg.data.sites,
                                                   quiet=quiet or not self.dist.is_main)
        kind = cfg.model.input_calibration
        self.hu_map_a = HUCalibration.from_dict(self.training_domain["calibration"][kind]) if kind != "none" else None
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir)  # half-written files of a killed run
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        if summary_writer is not None and self.dist.is_main:
            # purge_step drops events a killed run wrote after its last checkpoint, like the CSV logs
            self.tb = summary_writer(str(self.run_dir / "tensorboard"),
                                    purge_step=self.model.step + 1 if resume else None)

    # ------------------------------------------------------------------ resume
    def _resume(self) -> None:
        if not self.ckpt_path.exists():
            raise ConfigError(f"nothing to resume: {self.ckpt_path} does not exist (the run stopped before its first "
                              "checkpoint); start it afresh in a new folder")
        state = ckpt.load_checkpoint(self.ckpt_path, map_location=self.device)
        saved = config_from_dict(state["config"])
        if dataclasses.asdict(saved.model) != dataclasses.asdict(self.cfg.model):
            raise ConfigError("the checkpoint's model section differs from the config; resume with the same model")
        self.model.load_state_dict(state)
        ckpt.set_rng_state(state["rng"])
        self._truncate_log(self.run_dir / "metrics.csv", self.model.step, self.log_header)
        self._truncate_log(self.run_dir / "validation.csv", self.model.step)

    @staticmethod
    def _truncate_log(path: Path, step: int, header: list[str] | None = None) -> None:
        """Drop log rows written after the checkpoint (the killed run's lost steps).

        With ``header``, a log written by an older medgan with other columns is rewritten
        under the current header (columns it lacks stay empty), so its rows stay aligned.
        """
        if not path.exists():
            return
        rows = list(csv.reader(path.open()))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        if header is not None and kept[0] != header:
            old = kept[0]
            kept = [header] + [[dict(zip(old, r, strict=False)).get(k, "") for k in header] for r in kept[1:]]
        text = io.StringIO(newline="")
        csv.writer(text).writerows(kept)
        atomic_write_text(path, text.getvalue())

    @property
    def log_header(self) -> list[str]:
        """The columns of ``metrics.csv``: the step, what the method logs (:attr:`GANModel.log_names`), the LR."""
        return ["step", *self.model.log_names, "lr_g"]

    # ------------------------------------------------------------------ loop
    def _new_stream(self, step: int):
        ckpt.seed_everything(derive_seed(self.cfg.train.seed, step, self.dist.rank))
        loader = make_loader(self.model.stream, self.cfg.data.train_a, self.cfg.data.train_b, self.preset, self.spec,
                             self.cfg.optim.batch_size, rank=self.dist.rank, world_size=self.dist.world_size,
                             seed=self.cfg.train.seed, hu_map_a=self.hu_map_a)
        loader.epoch = step
        return iter(loader)

    def fit(self, stop_after: int | None = None) -> dict:
        """Train to ``optim.steps`` (or ``stop_after`` more steps); returns the last logs."""
        cfg, model = self.cfg, self.model
        total = cfg.optim.steps
        end = total if stop_after is None else min(total, model.step + stop_after)
        every = max(1, cfg.train.checkpoint_every)
        stream = None
        logs: dict = {}
        t0, seen = time.perf_counter(), 0
        with bar(total=total, initial=model.step, desc="train", quiet=self.quiet or not self.dist.is_main,
                 unit="step") as pbar:
            while model.step < end:
                if stream is None or model.step % every == 0:
                    stream = self._new_stream(model.step)
                logs = {k: float(v) for k, v in model.train_step(next(stream)).items()}
                if self.alarms is not None and self.dist.is_main:
                    for message in self.alarms.update(model.step, logs):
                        pbar.write(f"medgan ALARM: {message}", file=sys.stderr)
                        with (self.run_dir / "alarms.log").open("a") as fh:
                            fh.write(message + "\n")
                if not all(np.isfinite(v) for v in logs.values()):
                    raise InputError(f"training diverged at step {model.step} (non-finite loss {logs}); the last "
                                     f"checkpoint {self.ckpt_path} is intact - lower the learning rate and resume")
                seen += cfg.optim.batch_size * self.dist.world_size
                step = model.step
                pbar.update(1)
                if step % cfg.train.log_every == 0 or step == end:
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    shown = (*model.loss_names, *model.d_loss_names)
                    pbar.set_postfix({k: f"{logs[k]:.3f}" for k in shown if k in logs}
                                     | {"img/s": f"{rate:.1f}"})
                    if self.dist.is_main:
                        self._log(step, logs)
                if cfg.train.val_every and step % cfg.train.val_every == 0 and self.val_pairs and self.dist.is_main:
                    self.validate(step)
                # only at segment boundaries (and the final step): the data stream is seeded per segment,
                # so a checkpoint mid-segment could not be resumed exactly
                if step % every == 0 or step == total:
                    self.save()
        return logs

    def _log(self, step: int, logs: dict) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        names = self.model.log_names
        with path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(self.log_header)
            w.writerow([step, *(f"{logs[k]:.6g}" if k in logs else "" for k in names),
                        f"{self.model.opt_g.param_groups[0]['lr']:.6g}"])
        if self.tb is not None:
            for k in names:
                if k in logs:
                    self.tb.add_scalar(f"train/{k}", logs[k], step)
            self.tb.add_scalar("train/lr_g", self.model.opt_g.param_groups[0]["lr"], step)
            self.tb.flush()

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, step: int) -> list[dict]:
        results = []
        for path_a, path_b in self.val_pairs:
            a, b = (to_orientation(read_volume(p), self.cfg.data.orientation)[0] for p in (path_a, path_b))
            if (diff := a.grid_difference(b)) is not None:
                raise InputError(f"validation pair {path_a.name}: {diff}")
            spacing = self.cfg.data.spacing
            if spacing is not None and needs_resampling(a, spacing):
                a, b = resample_to_spacing(a, spacing), resample_to_spacing(b, spacing)
            z = slice(None)
            if a.shape[0] > self.cfg.train.max_val_slices:
                mid, half = a.shape[0] // 2, self.cfg.train.max_val_slices // 2
                z = slice(mid - half, mid + half)
            hu_a, hu_b = a.array[z].astype(np.float32), b.array[z].astype(np.float32)
            net_in = self.hu_map_a(hu_a) if self.hu_map_a is not None else hu_a
            pred = run_generator(self.model.translator, net_in, self.preset, self.cfg.model.spatial_dims, self.device,
                                 patch_size=self.cfg.data.patch_size, context_slices=self.cfg.model.context_slices)
            mask = body_mask(hu_b)
            results.append({"step": step, "case": path_a.name, "mae_input": mae(hu_a, hu_b, mask),
                            "mae": mae(pred, hu_b, mask), "ssim": ssim(pred, hu_b, mask)})
            if len(results) == 1:
                from medgan.utils.figures import comparison_figure

                comparison_figure(self.run_dir / "samples" / f"step_{step:07d}.png", hu_a, pred, hu_b,
                                  titles=("input (A)", "translation", "target (B)"),
                                  suptitle=f"{path_a.name}, step {step}: HU MAE in the body "
                                           f"{results[0]['mae_input']:.1f} (input) -> {results[0]['mae']:.1f} "
                                           "(translation)")
        self.model.gen.train()
        path = self.run_dir / "validation.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(results[0]))
            if new:
                w.writeheader()
            w.writerows(results)
        if self.tb is not None:
            self.tb.add_scalar("val/mae_input", np.mean([r["mae_input"] for r in results]), step)
            self.tb.add_scalar("val/mae", np.mean([r["mae"] for r in results]), step)
            self.tb.add_scalar("val/ssim", np.mean([r["ssim"] for r in results]), step)
            self.tb.flush()
        if not self.quiet:
            m_in = np.mean([r["mae_input"] for r in results])
            m_out = np.mean([r["mae"] for r in results])
            print(f"\nvalidation step {step}: HU MAE input {m_in:.1f} -> translated {m_out:.1f}", file=sys.stderr)
        return results

    # ------------------------------------------------------------------ outputs
    def save(self) -> None:
        if self.dist.is_main:
            cfg_dict = config_to_dict(self.cfg)
            directions = tuple(self.model.directions)
            ckpt.save_checkpoint(self.ckpt_path, self.model.state_dict(), cfg_dict, self.preset.to_dict(),
                                 {"training_domain": self.training_domain, "directions": list(directions)})
            spec = ModelSpec(cfg_dict, self.preset.to_dict(), step=self.model.step, direction="A->B",
                             declared_directions=directions, **self.training_domain)
            write_model_file(self.run_dir / "model.safetensors", self.model.export_tensors(), spec)
            from medgan.utils.figures import loss_curves

            loss_curves(self.run_dir / "metrics.csv", self.run_dir / "loss_curves.png",
                        generator_keys=self.model.loss_names, discriminator_keys=self.model.d_loss_names)
        barrier(self.dist)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        shutdown(self.dist)


def train(cfg: ExperimentConfig, run_dir: str | Path, resume: bool = False, quiet: bool = False) -> Path:
    trainer = Trainer(cfg, run_dir, resume=resume, quiet=quiet)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return Path(run_dir) / "model.safetensors"
