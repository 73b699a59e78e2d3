"""Evaluation: SynthRAD2023 image metrics, per-tissue MAE, cohort statistics and reports."""
from medgan.evaluation.evaluate import CaseResult, evaluate_case, evaluate_folders, summary_table
from medgan.evaluation.metrics import image_metrics, mae, mean_error, psnr, ssim, tissue_mae
from medgan.evaluation.statistics import bootstrap_ci, estimate_632, patient_folds, summarize

__all__ = ["CaseResult", "evaluate_case", "evaluate_folders", "summary_table", "image_metrics", "mae",
           "mean_error", "psnr", "ssim", "tissue_mae", "bootstrap_ci", "estimate_632", "patient_folds", "summarize"]
