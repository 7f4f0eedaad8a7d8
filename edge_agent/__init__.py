"""EdgeGAN edge agent: scores sensor streams with a GAN model bundle and talks MQTT. Never imports torch."""

__version__ = "0.1.0"
