"""Evaluation of trained stages: diffusion metrics (loss per timestep bucket, first-frame PSNR, temporal
consistency, FVD) in plain PyTorch; the upsampler's metrics come from its LightningModule's test step."""
