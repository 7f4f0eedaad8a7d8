"""Synthetic data from a bundle: rows for augmentation and sharing (`generate`), and how faithful
and how private they are (`report`)."""
