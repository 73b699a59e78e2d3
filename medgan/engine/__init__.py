"""Training: the registered methods (CycleGAN, paired), their optimisation loop, checkpoints, DDP set-up."""
