"""Training: the CycleGAN model, its optimisation loop, checkpoints and distributed set-up."""
