"""What a training run folder holds, so that a fresh run never mixes its logs with another run's."""
from __future__ import annotations

from pathlib import Path

from medgan.errors import ConfigError

#: Files and folders a training run writes besides its checkpoint (config.yaml is rewritten at each start).
RUN_LOGS = ("metrics.csv", "validation.csv", "alarms.log", "loss_curves.png", "samples", "tensorboard",
            "model.safetensors")


def run_logs(run_dir: str | Path) -> list[str]:
    """Names of the run logs present in ``run_dir`` (empty when it is new or holds none)."""
    run_dir = Path(run_dir)
    return [name for name in RUN_LOGS if (run_dir / name).exists()]


def check_fresh_run_dir(run_dir: str | Path) -> None:
    """Refuse to start a fresh run where another run left its logs.

    A run killed before its first checkpoint leaves ``metrics.csv`` and friends but
    nothing to resume from; appending to them would show steps twice and make the
    loss curves double back.
    """
    found = run_logs(run_dir)
    if found:
        raise ConfigError(f"{run_dir} holds another run's logs ({', '.join(found)}) but no checkpoint to resume "
                          "from; choose a new output folder or delete that run first")
