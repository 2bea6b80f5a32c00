"""Evaluation of trained models in plain PyTorch: diffusion metrics (loss per timestep bucket, first-frame PSNR,
temporal consistency, FVD) and upsampler metrics (PSNR/SSIM on RGB and Y, temporal error, LPIPS, tLP, bicubic
baseline; `evaluation/upsampler.py`, logged by the upsampler's validation and test steps) and the video-quality
metrics users look at (`video_quality.py`: CLIP score, frame similarity, VBench consistency, motion smoothness,
dynamic degree, imaging quality).
One PSNR: `video_metrics.psnr`."""
