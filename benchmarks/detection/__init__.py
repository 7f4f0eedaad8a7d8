"""Detection quality on labelled data: EdgeGAN against baselines on the same windows and splits."""
