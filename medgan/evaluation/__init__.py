"""Image metrics as the field computes them (SynthRAD2023 definitions) and reports."""
from medgan.evaluation.metrics import image_metrics, mae, psnr, ssim

__all__ = ["image_metrics", "mae", "psnr", "ssim"]
