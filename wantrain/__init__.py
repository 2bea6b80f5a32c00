"""wantrain: train an image-to-video diffusion UNet and cascaded x2 upsamplers."""

__version__ = "0.1.0"
