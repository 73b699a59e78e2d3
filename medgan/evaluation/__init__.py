"""Evaluation: SynthRAD2023/2025 image metrics, per-tissue and per-organ fidelity, cohort statistics and reports."""
from medgan.evaluation.evaluate import (
    CaseResult,
    build_mask,
    evaluate_case,
    evaluate_folders,
    paired_table,
    summary_table,
)
from medgan.evaluation.metrics import PROTOCOLS, image_metrics, mae, mean_error, ms_ssim, psnr, ssim, tissue_mae
from medgan.evaluation.statistics import (
    bootstrap_ci,
    ci_method,
    mean_ci,
    paired_comparison,
    patient_folds,
    summarize,
    t_interval,
)

__all__ = ["CaseResult", "build_mask", "evaluate_case", "evaluate_folders", "paired_table", "summary_table",
           "PROTOCOLS", "image_metrics", "mae", "mean_error", "ms_ssim", "psnr", "ssim", "tissue_mae", "bootstrap_ci",
           "ci_method", "mean_ci", "paired_comparison", "patient_folds", "summarize", "t_interval"]
