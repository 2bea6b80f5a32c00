"""Evaluation of trained models in plain PyTorch: diffusion metrics (loss per timestep bucket, first-frame PSNR,
temporal consistency, FVD) and upsampler metrics (PSNR/SSIM on RGB and Y, temporal error, LPIPS, tLP, bicubic
baseline; `evaluation/upsampler.py`, logged by the upsampler's validation and test steps).
One PSNR: `video_metrics.psnr`."""
