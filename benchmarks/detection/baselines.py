"""The detectors a user would otherwise pick, on the same windows as ours.

Each takes normalised windows [n, window, channels] (the training part's per-channel mean and spread, the
same normalisation EdgeGAN uses) and returns one score per window, higher meaning more anomalous.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from trainer.calibrate import evenly_spaced

Windows = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]
FIT_WINDOW_CAP = 20_000  # PCA and the forest see at most this many training windows (evenly spaced)


class Detector(Protocol):
    """Fit on normal training windows, then score any windows."""

    name: str

    def fit(self, windows: Windows) -> None: ...

    def score(self, windows: Windows) -> Scores: ...


def _flat(windows: Windows) -> npt.NDArray[np.float32]:
    return windows.reshape(len(windows), -1)


@dataclass
class IsolationForestDetector:
    """scikit-learn's IsolationForest on flattened windows."""

    name: str = "IsolationForest"
    seed: int = 0
    model: object = None

    def fit(self, windows: Windows) -> None:
        from sklearn.ensemble import IsolationForest

        self.model = IsolationForest(n_estimators=200, random_state=self.seed, n_jobs=1)
        self.model.fit(_flat(evenly_spaced(windows, FIT_WINDOW_CAP)))

    def score(self, windows: Windows) -> Scores:
        return -np.asarray(self.model.score_samples(_flat(windows)), dtype=np.float64)


@dataclass
class PcaDetector:
    """PCA on flattened windows keeping `variance` of the spread; score Q (residual) or Hotelling's T²."""

    statistic: str  # "Q" or "T2"
    variance: float = 0.95
    name: str = ""
    mean: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    components: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    eigenvalues: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.name = self.name or f"PCA {self.statistic}"

    def fit(self, windows: Windows) -> None:
        from sklearn.decomposition import PCA

        flat = _flat(evenly_spaced(windows, FIT_WINDOW_CAP)).astype(np.float64)
        pca = PCA(n_components=self.variance, svd_solver="full").fit(flat)
        self.mean, self.components = pca.mean_, pca.components_
        self.eigenvalues = np.maximum(pca.explained_variance_, 1e-12)

    def score(self, windows: Windows) -> Scores:
        centred = _flat(windows).astype(np.float64) - self.mean
        projected = centred @ self.components.T
        if self.statistic == "T2":
            return np.asarray((projected**2 / self.eigenvalues).sum(axis=1))
        residual = centred - projected @ self.components
        return np.asarray((residual**2).sum(axis=1))


@dataclass
class ConvAutoencoderDetector:
    """A 1-D convolutional autoencoder; score is the mean squared reconstruction error of the window.

    Trained for the same budget of windows per epoch as EdgeGAN's critic (`max_train_windows`).
    """

    width: int = 32
    epochs: int = 40
    windows_per_epoch: int = 4096
    seed: int = 0
    threads: int = 2
    name: str = "Conv autoencoder"
    model: object = None

    def fit(self, windows: Windows) -> None:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        torch.set_num_threads(self.threads)
        channels, length = windows.shape[2], windows.shape[1]
        w = self.width
        self.model = nn.Sequential(
            nn.Conv1d(channels, w, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(w, 2 * w, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(2 * w, 8, 3, padding=1),  # bottleneck: 8 x length/4
            nn.LeakyReLU(0.2),
            nn.ConvTranspose1d(8, 2 * w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose1d(2 * w, w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(w, channels, 5, padding=2),
        )
        assert length % 4 == 0, "window length must be a multiple of 4"
        data = torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 2, 1)))
        optimiser = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            order = torch.randperm(len(data), generator=generator)[: self.windows_per_epoch]
            for start in range(0, len(order), 64):
                batch = data[order[start : start + 64]]
                loss = ((self.model(batch) - batch) ** 2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def score(self, windows: Windows) -> Scores:
        import torch

        data = torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 2, 1)))
        out = []
        with torch.inference_mode():
            for start in range(0, len(data), 1024):
                batch = data[start : start + 1024]
                out.append(((self.model(batch) - batch) ** 2).mean(dim=(1, 2)).numpy())
        return np.concatenate(out).astype(np.float64)


@dataclass
class PyodAnoGanDetector:
    """PyOD's AnoGAN (latent search per window at query time, hence slow) on flattened windows."""

    epochs: int = 50
    fit_windows: int = 1000
    name: str = "PyOD AnoGAN"
    seed: int = 0
    model: object = None

    def fit(self, windows: Windows) -> None:
        import torch
        from pyod.models.anogan import AnoGAN

        torch.manual_seed(self.seed)
        self.model = AnoGAN(epochs=self.epochs, contamination=0.01, verbose=0, device="cpu")
        self.model.fit(_flat(evenly_spaced(windows, self.fit_windows)))

    def score(self, windows: Windows) -> Scores:
        return np.asarray(self.model.decision_function(_flat(windows)), dtype=np.float64)


def timed(action: object, *args: object) -> tuple[object, float]:
    """(result, seconds)."""
    start = time.perf_counter()
    result = action(*args)
    return result, time.perf_counter() - start
