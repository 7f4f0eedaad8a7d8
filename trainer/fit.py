"""The training loop: WGAN-GP for generator and critic, then the encoder f-AnoGAN style (izi_f).

Why WGAN-GP: the critic's loss tracks a Wasserstein distance, so it keeps giving the generator useful
gradients when the two are unbalanced, which plain GAN losses on small sensor datasets often do not (they
saturate and collapse). The gradient penalty enforces the Lipschitz constraint without weight clipping's
capacity loss. The only file with optimisers.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from trainer.config import FitConfig, ModelConfig
from trainer.distributed import SINGLE, World, check_replicas_agree
from trainer.encoder_corruption import corrupt
from trainer.errors import QualityGateError
from trainer.networks import Critic, Encoder, Generator, without_level
from trainer.progress import EpochProgress
from trainer.validation_signal import generation_quality, mean_spread

log = logging.getLogger(__name__)

COLLAPSE_DIVERSITY = 0.25  # generated windows this much less spread than real ones = mode collapse
GAN_ATTEMPTS = 3  # GAN fits tried, each from its own seed, before a fit is refused as collapsed
RESTART_SEED_STEP = 1000  # attempt k starts from fit.seed + k * this: clear of the members' seeds (+1, +2)
_ADAM_BETAS = (0.5, 0.9)


@dataclass(slots=True)
class TrainedNets:
    """Networks with the best validation state loaded, and the history that chose it."""

    generator: Generator
    critic: Critic
    encoder: Encoder
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    collapsed_epochs: int = 0
    gan_restarts: int = 0  # GAN fits that collapsed in every epoch before this one, each with its own seed
    feature_energy_ratio: float = 1.0  # mean f(x)^2 / mean x^2 on training windows, set before the encoder


def fit_networks(
    train: npt.NDArray[np.float32],
    holdout: npt.NDArray[np.float32],
    model: ModelConfig,
    fit: FitConfig,
    world: World = SINGLE,
) -> TrainedNets:
    """Train on normalised windows [n, channels, window]; returns the best checkpoint by validation.

    Under torchrun every rank runs this with the same data and seed: the networks start equal (DDP
    broadcasts rank 0's weights), each rank takes every world-size-th batch of the same epoch plan, and
    gradients are averaged, so weights, validation and checkpoint choice stay identical on every rank.
    """
    train_t, holdout_t = torch.from_numpy(train), torch.from_numpy(holdout)
    if model.removes_window_level:  # the scorer graph removes it too (ScoreTerms)
        train_t, holdout_t = without_level(train_t), without_level(holdout_t)
    nets, rng = _fit_gan_with_restarts(train_t, holdout_t, model, fit, world)
    _fit_encoder(nets, train_t, holdout_t, fit, rng, world, model.removes_window_level)
    check_replicas_agree(world, [nets.generator, nets.critic, nets.encoder])
    for net in (nets.generator, nets.critic, nets.encoder):
        net.eval()
    return nets


def _fit_gan_with_restarts(
    train: torch.Tensor, holdout: torch.Tensor, model: ModelConfig, fit: FitConfig, world: World
) -> tuple[TrainedNets, np.random.Generator]:
    """Fitted GAN networks (encoder not yet) and the random stream the encoder goes on with. A GAN that
    collapsed in every epoch is fitted again from another seed, up to GAN_ATTEMPTS fits in all.

    Why: collapse is a property of one run, not of the data. SMD machine-1-6 with fit.seed 2 collapsed
    (the generated windows spread at best 18% of real ones) and the whole fit was refused, where seeds 0
    and 1 fitted the same rows. Every rank sees the same validation figures, so all restart together.
    """
    failure = ""
    for attempt in range(GAN_ATTEMPTS):
        seed = fit.seed + attempt * RESTART_SEED_STEP
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        nets = _fresh_nets(model, train.shape[1])
        try:
            _fit_gan(nets, train, holdout, model, fit.model_copy(update={"seed": seed}), rng, world)
        except QualityGateError as err:
            failure = str(err)
            if attempt + 1 < GAN_ATTEMPTS:
                log.warning("%s; fitting the GAN again from seed %d", err, seed + RESTART_SEED_STEP)
            continue
        nets.gan_restarts = attempt
        return nets, rng
    raise QualityGateError(
        f"{failure} ({GAN_ATTEMPTS} GAN fits, from seeds {fit.seed} + k x {RESTART_SEED_STEP})"
    )


def _fresh_nets(model: ModelConfig, n_channels: int) -> TrainedNets:
    """Untrained networks, initialised from torch's current seed."""
    return TrainedNets(
        generator=Generator(model.latent_dim, n_channels, model.window_len, model.width),
        critic=Critic(n_channels, model.window_len, model.width),
        encoder=Encoder(model.latent_dim, n_channels, model.window_len, model.width),
    )


MIN_STEPS_PER_EPOCH = 16  # the fewest steps in any epoch (encoder's and GAN's), however few the windows


def gan_steps_per_epoch(fit: FitConfig) -> int:
    """Critic steps in every GAN epoch, whatever the data's size: as many as a pass over max_train_windows
    (at least MIN_STEPS_PER_EPOCH, so a small max_train_windows, as in quick benchmark fits, loses none).

    Why: a GAN converges with its updates, not with passes over the data. With a pass per epoch, 400 rows
    (257 windows) got 16 critic steps an epoch, a third of a large fit's 48. SMD machine-1-6 on the last
    400 rows of its training file was refused as collapsed in all three attempts: the generated windows'
    spread rose steadily to 0.24-0.25 of the real one by epoch 40 (the gate is 0.25) and reached 0.38 at
    three times the steps. TEP's 337 windows were still improving too: validation MMD 0.267 after 640
    critic steps, at best 0.193 after 1,760 of 1,920. Small data are drawn again more often; the
    checkpoint is still chosen on the holdout.
    """
    return max(MIN_STEPS_PER_EPOCH, -(-fit.max_train_windows // fit.batch_size))  # never below the old floor


def _batches(
    n: int,
    fit: FitConfig,
    rng: np.random.Generator,
    world: World = SINGLE,
    min_steps: int = MIN_STEPS_PER_EPOCH,
) -> list[npt.NDArray[np.int64]]:
    """One epoch of index batches: a pass over (at most max_train_windows of) the data, never fewer than
    `min_steps` steps (windows drawn again in new orders to make them up).

    With several ranks, every rank draws the same plan and keeps every world-size-th batch, so the ranks
    share out one epoch; steps are rounded up to a multiple of the world size so all ranks step together.
    """
    per_epoch = min(n, fit.max_train_windows)
    steps = max(min_steps, -(-per_epoch // fit.batch_size))
    steps = -(-steps // world.size) * world.size
    needed = steps * fit.batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(-(-needed // n))])[:needed]
    batches = [order[i : i + fit.batch_size] for i in range(0, needed, fit.batch_size)]
    return batches[world.rank :: world.size]


def _gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    mix = torch.rand(real.shape[0], 1, 1)
    blended = (mix * real + (1 - mix) * fake).requires_grad_(True)
    grads = torch.autograd.grad(critic(blended).sum(), blended, create_graph=True)[0]
    return ((grads.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


class _CriticObjective(torch.nn.Module):
    """The critic's whole loss in one forward, so DistributedDataParallel sees one forward per backward.

    The gradient penalty's autograd.grad runs inside it with respect to the blended windows only, so DDP's
    gradient hooks fire once, in the loss's backward.
    """

    def __init__(self, critic: Critic, penalty: float) -> None:
        super().__init__()
        self.critic, self.penalty = critic, penalty

    def forward(
        self, real: torch.Tensor, fake: torch.Tensor, penalty_scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`penalty_scale` 0 skips the penalty (lazy regularisation: `fit.penalty_every`)."""
        wasserstein = self.critic(real).mean() - self.critic(fake).mean()
        if penalty_scale == 0:
            return -wasserstein, wasserstein
        penalty = self.penalty * penalty_scale * _gradient_penalty(self.critic, real, fake)
        return -wasserstein + penalty, wasserstein


class _GeneratorObjective(torch.nn.Module):
    """The critic's verdict plus the moment-matching term (`moment_loss`) against the same real batch."""

    def __init__(self, generator: Generator, critic: torch.nn.Module, moment_weight: float) -> None:
        super().__init__()
        self.generator, self.critic = generator, critic
        self.moment_weight = moment_weight

    def forward(self, latent: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake = self.generator(latent)
        loss = -self.critic(fake).mean()
        if self.moment_weight > 0:
            loss = loss + self.moment_weight * moment_loss(fake, real)
        return loss


def window_moments(windows: torch.Tensor) -> torch.Tensor:
    """Per-channel statistics of a batch [b, C, W] that a sensor stream's look depends on, as logs [C, k]:
    spread, mean absolute first and second difference (roughness), and power in four frequency bands."""
    eps = 1e-6
    spread = windows.std(dim=2).mean(dim=0)
    first = windows.diff(dim=2)
    rough = first.abs().mean(dim=(0, 2))
    curvature = first.diff(dim=2).abs().mean(dim=(0, 2))
    power = torch.fft.rfft(windows - windows.mean(dim=2, keepdim=True), dim=2).abs().pow(2).mean(dim=0)
    bins = power.shape[1]
    edges = [1, max(2, bins // 16), max(3, bins // 8), max(4, bins // 3), bins]
    bands = [power[:, lo:hi].sum(dim=1) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return torch.log(torch.stack([spread, rough, curvature, *bands], dim=1) + eps)


def moment_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared log-ratio of `window_moments` between generated and real windows.

    Why: the critic judges whole windows and tolerates a stream that is too smooth or too rough as long as
    the shapes look right, yet that roughness is exactly what a variability check and a simulator's clean
    streams depend on (measured before this term: generated bearing temperature 11x rougher than real).
    """
    return (window_moments(fake) - window_moments(real).detach()).pow(2).mean()


class _FrozenView(torch.nn.Module):
    """Calls the critic without registering it as a sub-module (so DDP does not track its parameters)."""

    def __init__(self, critic: Critic) -> None:
        super().__init__()
        self._call = [critic]  # a list hides it from nn.Module's registry

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self._call[0](windows)


class _EncoderObjective(torch.nn.Module):
    """izi_f for the encoder's step; G and the critic are frozen and hidden from DDP."""

    def __init__(self, nets: TrainedNets) -> None:
        super().__init__()
        self.encoder = nets.encoder  # the one registered sub-module
        self.nets = nets  # a plain dataclass: nn.Module does not register it, so DDP never sees G or D

    def forward(self, windows: torch.Tensor, clean: torch.Tensor | None = None) -> torch.Tensor:
        return izi_f_loss(self.nets, windows, clean=clean)


def _parallel(module: torch.nn.Module, world: World) -> torch.nn.Module:
    """The module itself for one process; wrapped in DistributedDataParallel under torchrun."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, broadcast_buffers=False)


def _fit_gan(
    nets: TrainedNets,
    train: torch.Tensor,
    holdout: torch.Tensor,
    model: ModelConfig,
    fit: FitConfig,
    rng: np.random.Generator,
    world: World = SINGLE,
) -> None:
    g, d = nets.generator, nets.critic
    critic_objective = _parallel(_CriticObjective(d, fit.gradient_penalty), world)
    # The critic is frozen (no gradient) in the generator's step, so this DDP instance owns only G's.
    generator_objective = _parallel(_GeneratorObjective(g, _FrozenView(d), fit.moment_weight), world)
    opt_g = torch.optim.Adam(g.parameters(), lr=fit.lr, betas=_ADAM_BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=fit.critic_lr, betas=_ADAM_BETAS)
    probe = torch.randn(min(256, max(len(holdout), 64)), model.latent_dim)
    learned_spread = mean_spread(train, fit.seed + 2)  # collapse is judged against what G learns from
    best_mmd, best_state = float("inf"), None
    history = nets.history
    warmup = fit.epochs // 5
    progress = EpochProgress(log, "GAN", fit.epochs, world.is_main)  # one line per job, not per rank
    for epoch in range(1, fit.epochs + 1):
        g.train()
        d.train()
        sums = {"critic": 0.0, "generator": 0.0, "wasserstein": 0.0}
        batches = _batches(len(train), fit, rng, world, gan_steps_per_epoch(fit))
        for step, index in enumerate(batches, start=1):
            real = train[torch.from_numpy(index)]
            fake = g(torch.randn(len(real), model.latent_dim)).detach()
            # Lazy regularisation: the penalty on every k-th step, k times as heavy (half its cost at k=2).
            lazy = step % fit.penalty_every == 0
            loss_d, wasserstein = critic_objective(real, fake, float(fit.penalty_every) if lazy else 0.0)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            sums["critic"] += float(loss_d.detach())
            sums["wasserstein"] += float(wasserstein.detach())
            if step % fit.critic_steps == 0:
                loss_g = generator_objective(torch.randn(len(real), model.latent_dim), real)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                sums["generator"] += float(loss_g.detach()) * fit.critic_steps
        g.eval()
        with torch.no_grad():
            quality = generation_quality(g(probe), holdout, seed=fit.seed, learned_spread=learned_spread)
        for key, total in sums.items():
            history.setdefault(f"gan_{key}_loss" if key != "wasserstein" else "wasserstein", []).append(
                total / max(len(batches), 1)
            )
        history.setdefault("val_mmd", []).append(quality.mmd)
        history.setdefault("val_diversity_ratio", []).append(quality.diversity_ratio)
        progress.epoch_done(
            epoch,
            wasserstein=sums["wasserstein"] / max(len(batches), 1),
            val_mmd=quality.mmd,
            diversity=quality.diversity_ratio,
        )
        # Early epochs start from near-constant output; judge collapse and pick checkpoints after warm-up.
        if epoch <= warmup:
            continue
        collapsed = quality.diversity_ratio < COLLAPSE_DIVERSITY
        nets.collapsed_epochs += int(collapsed)
        if not collapsed and quality.mmd < best_mmd:
            best_mmd, nets.best_epoch = quality.mmd, epoch
            best_state = (copy.deepcopy(g.state_dict()), copy.deepcopy(d.state_dict()))
    if best_state is None:
        raise QualityGateError(
            "the generator collapsed in every epoch (generated windows spread less than "
            f"{COLLAPSE_DIVERSITY:.0%} of real ones, at best {max(history['val_diversity_ratio']):.0%}); "
            "try more epochs, a higher lr or more data"
        )
    g.load_state_dict(best_state[0])
    d.load_state_dict(best_state[1])
    log.info(
        "GAN: best epoch %d of %d (validation MMD %.4f), %d collapsed epochs",
        nets.best_epoch,
        fit.epochs,
        best_mmd,
        nets.collapsed_epochs,
    )


def izi_f_loss(
    nets: TrainedNets,
    windows: torch.Tensor,
    feature_weight: float = 1.0,
    clean: torch.Tensor | None = None,
) -> torch.Tensor:
    """f-AnoGAN's izi_f: sample residual x vs G(E(x)) plus critic-feature residual.

    `clean`: the windows before corruption (fit.encoder_denoise); the reconstruction of the corrupted
    `windows` is then judged against them.

    The feature residual is divided by the critic's feature energy relative to the windows' energy: WGAN
    critics have unbounded activations (here often 20x the input's), and unscaled they drown the sample
    residual, leaving the encoder stuck where reconstructions are poor (measured: AUROC 0.60 vs 0.79).
    """
    target = windows if clean is None else clean
    reconstruction = nets.generator(nets.encoder(windows))
    residual = (target - reconstruction).pow(2).mean()
    features = (nets.critic.features(target) - nets.critic.features(reconstruction)).pow(2).mean()
    return residual + feature_weight * features / nets.feature_energy_ratio


def _fit_encoder(
    nets: TrainedNets,
    train: torch.Tensor,
    holdout: torch.Tensor,
    fit: FitConfig,
    rng: np.random.Generator,
    world: World = SINGLE,
    remove_level: bool = False,
) -> None:
    for frozen in (nets.generator, nets.critic):
        frozen.eval()
        frozen.requires_grad_(False)
    with torch.no_grad():
        sample = train[:2048]
        energy = float(nets.critic.features(sample).pow(2).mean()) / max(float(sample.pow(2).mean()), 1e-12)
    nets.feature_energy_ratio = max(energy, 1e-6)
    encoder = nets.encoder
    objective = _parallel(_EncoderObjective(nets), world)
    opt = torch.optim.Adam(encoder.parameters(), lr=fit.encoder_lr, betas=(0.9, 0.999))
    best_loss, best_state, best_epoch = float("inf"), copy.deepcopy(encoder.state_dict()), 0
    # drawn only when used, so a plain fit's random stream (its batches) is what it was
    noise = torch.Generator().manual_seed(int(rng.integers(2**31))) if fit.encoder_denoise > 0 else None
    progress = EpochProgress(log, "encoder", fit.encoder_epochs, world.is_main)
    for epoch in range(1, fit.encoder_epochs + 1):
        encoder.train()
        total = 0.0
        batches = _batches(len(train), fit, rng, world)
        for index in batches:
            clean = train[torch.from_numpy(index)]
            if noise is not None:
                corrupted = corrupt(clean, fit.encoder_denoise, noise, remove_level)
                loss = objective(corrupted, clean)
            else:
                loss = objective(clean)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        encoder.eval()
        with torch.no_grad():
            val = float(izi_f_loss(nets, holdout[:1024]))
        nets.history.setdefault("encoder_loss", []).append(total / max(len(batches), 1))
        nets.history.setdefault("encoder_val_loss", []).append(val)
        if val < best_loss:
            best_loss, best_state, best_epoch = val, copy.deepcopy(encoder.state_dict()), epoch
        progress.epoch_done(epoch, loss=total / max(len(batches), 1), val_loss=val)
        if epoch - best_epoch >= fit.encoder_patience:
            log.info(
                "encoder: no better validation loss for %d epochs, stopping at %d",
                fit.encoder_patience,
                epoch,
            )
            break
    encoder.load_state_dict(best_state)
    log.info("encoder: best validation izi_f loss %.4f", best_loss)
