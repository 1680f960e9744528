"""FGSM with a random start (FGSM-RS), the attack of fast adversarial training.

Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020.
Start from a uniform point of the ε-ball, take one signed-gradient step of size α = 1.25·ε,
and bring the result back into the ε-ball and the image box:

    δ₀ ~ U(−ε, ε)^d,   x₀ = clip_[0,1](x + δ₀)
    x' = Π_{B_ε(x) ∩ [0,1]^d} ( x₀ + α · sign(∇_x CE(f(x₀), y)) )

Wong et al.'s MNIST code takes the gradient at the unclipped start x + δ₀ (their CIFAR-10 code
clips it): ``clip_start=False`` does the same. On MNIST, whose background pixels are 0, the
clipped start halves the noise on most pixels, and catastrophic overfitting follows far more
often (a 10-epoch run at ε = 0.3 collapsed to 0 % PGD accuracy with it).

That is PGD with one step from a random start, so :class:`FGSMRandomStart` is a
:class:`attacks.PGD` with ``steps = 1``, ``random_start = True`` and its own default step size;
it reuses the threat models (L∞ as in the paper, L2 by the normalised gradient).
"""

from __future__ import annotations

from attacks.pgd import PGD
from attacks.threat_models import Norm
from common.modes import ModelMode

FGSM_RS_STEP_FACTOR = 1.25
"""α / ε of Wong et al.: a step longer than ε, from a random start, keeps FGSM training robust."""


class FGSMRandomStart(PGD):
    """One signed-gradient step of size α (default 1.25·ε) from a uniform random start.

    Args:
        eps: radius of the threat model in [0, 1] pixel units (8/255 on CIFAR-10 and 0.3 on
            MNIST in the paper).
        step_size: α; None uses 1.25·ε (the paper's 10/255 at ε = 8/255, 0.375 at ε = 0.3).
        norm: "linf" (the paper) or "l2".
        model_mode: mode of the model during the attack. "eval" (default) matches the rest of
            robustlens, so FGSM-RS and PGD training differ only in the search; Wong et al.'s
            code attacks in train mode (BatchNorm on batch statistics), ``model_mode: train``.
        seed: seeds the random start on every call (evaluation); None uses the global RNG.
        clip_start: project the random start into [0, 1] before the gradient (default); False
            takes the gradient at x + δ₀ as Wong et al.'s MNIST code (the result is projected
            either way).
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        step_size: float | None = None,
        norm: Norm = "linf",
        model_mode: ModelMode = "eval",
        seed: int | None = None,
        clip_start: bool = True,
    ) -> None:
        if not isinstance(clip_start, bool):
            raise ValueError(f"clip_start must be true or false, got {clip_start!r}")
        step = FGSM_RS_STEP_FACTOR * float(eps) if step_size is None else step_size
        if step_size is None and eps == 0:
            step = 1.0  # any positive α: with ε = 0 the attack returns x unchanged
        super().__init__(
            eps=eps,
            step_size=step,
            steps=1,
            norm=norm,
            random_start=True,
            restarts=1,
            model_mode=model_mode,
            seed=seed,
        )
        self.clip_start = clip_start

    def __repr__(self) -> str:
        return (
            f"FGSMRandomStart(norm={self.norm}, eps={self.eps:g}, step_size={self.step_size:g}, "
            f"model_mode={self.model_mode}, clip_start={self.clip_start})"
        )
