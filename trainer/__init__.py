"""EdgeGAN trainer: fits a GAN + encoder on normal sensor windows and exports a verified model bundle."""

__version__ = "0.1.0"
