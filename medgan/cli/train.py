"""``medgan train``: CycleGAN training from a YAML config (single process or under torchrun)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a CycleGAN from a YAML config",
                       description="Train on one device, or on several with "
                                   "`torchrun --nproc_per_node=N -m medgan.cli.main train ...` (DDP).")
    p.add_argument("-c", "--config", required=True, metavar="YAML", help="experiment config (see configs/)")
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="run folder (default: runs/<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.steps=2000 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from medgan.config import load_config
    from medgan.engine.trainer import train
    from medgan.io.writers import FOLDER, plan_outputs

    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.output or Path("runs") / cfg.name)
    # a file, an unwritable place or the config itself is refused now, not after the data are loaded; the trainer
    # refuses a folder holding another run's logs (--resume continues one)
    plan_outputs([(run_dir, FOLDER)], [args.config], overwrite=True)
    model = train(cfg, run_dir, resume=args.resume, quiet=args.quiet)
    print(f"trained model: {model}")
    return 0
