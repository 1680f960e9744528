"""The top-k attack settings of Chen et al. (NeurIPS 2019), one per dataset, ready to select.

Chen, Wu, Rastogi, Liang & Jha, "Robust Attribution Regularization", NeurIPS 2019; the values
are those of the ``config.json`` of each dataset folder of their code
(github.com/jfc43/robust-attribution-regularization), with GTSRB's and Flower's 0–255 pixel
units divided by 255:

| dataset | ε | k_attack (``k_top``) | k_score (``eval_k_top``) | steps | step size | IG steps |
|---|---|---|---|---|---|---|
| mnist | 0.3 | 200 | 100 | 100 | 0.01 | 100 |
| fashion_mnist | 0.1 | 100 | 100 | 100 | 0.01 | 100 |
| gtsrb | 8/255 | 100 | 100 | 50 | 1/255 | 100 |
| flower | 8/255 | 1000 | 1000 | 100 | 1/255 | 100 |

Every config selects the kept iterate by Kendall's τ (``attribution_attack_measure``) and
reports top-k intersection, Spearman's ρ and Kendall's τ at that iterate; integrated gradients
run from a zero baseline with a right Riemann sum of ``num_IG_steps`` points
(:meth:`TopKAttackProtocol.integrated_gradients`).

    protocol = chen_protocol("mnist")
    method = protocol.integrated_gradients()
    scores = compute_metric("kendall@topk_attack", model, x, y, method, **protocol.metric_options())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attacks.explanation import TopKExplanationAttack
from attributions.integrated_gradients import IntegratedGradients


@dataclass(frozen=True)
class TopKAttackProtocol:
    """One published setting of the top-k attack.

    Attributes:
        eps: L∞ radius in [0, 1] pixel units.
        k_attack: size of the top set the attack pushes mass out of.
        k_score: k of the reported top-k intersection.
        steps: attack steps.
        step_size: α of each signed step.
        ig_steps: integrated-gradients points of the attacked explanation.
        criterion: what the kept iterate is selected by ("kendall" in every config of Chen et al.).
    """

    eps: float
    k_attack: int
    k_score: int
    steps: int
    step_size: float
    ig_steps: int
    criterion: str = "kendall"

    def metric_options(self, select_as_published: bool = False) -> dict[str, Any]:
        """Options of the ``*@topk_attack`` metrics (:func:`metrics.compute_metric`).

        Args:
            select_as_published: also select every metric's iterate by :attr:`criterion`, as the
                published tables do; False lets each metric select by its own similarity (the
                strongest attack for each reported number).
        """
        options: dict[str, Any] = {
            "eps": self.eps,
            "k_attack": self.k_attack,
            "k_score": self.k_score,
            "steps": self.steps,
            "step_size": self.step_size,
        }
        if select_as_published:
            options["criterion"] = self.criterion
        return options

    def attack(self, **overrides: Any) -> TopKExplanationAttack:
        """The attack with these settings (``overrides`` replace any constructor argument)."""
        kwargs: dict[str, Any] = {
            "eps": self.eps,
            "step_size": self.step_size,
            "steps": self.steps,
            "k_attack": self.k_attack,
            "k_score": self.k_score,
            "criteria": self.criterion,
        }
        return TopKExplanationAttack(**{**kwargs, **overrides})

    def integrated_gradients(self, **overrides: Any) -> IntegratedGradients:
        """The attacked explanation: IG from a zero baseline, right Riemann sum of ``ig_steps``."""
        kwargs: dict[str, Any] = {"steps": self.ig_steps, "baseline": "zero", "rule": "riemann_right"}
        return IntegratedGradients(**{**kwargs, **overrides})


CHEN_PROTOCOLS: dict[str, TopKAttackProtocol] = {
    "mnist": TopKAttackProtocol(eps=0.3, k_attack=200, k_score=100, steps=100, step_size=0.01, ig_steps=100),
    "fashion_mnist": TopKAttackProtocol(eps=0.1, k_attack=100, k_score=100, steps=100, step_size=0.01, ig_steps=100),
    "gtsrb": TopKAttackProtocol(eps=8 / 255, k_attack=100, k_score=100, steps=50, step_size=1 / 255, ig_steps=100),
    "flower": TopKAttackProtocol(eps=8 / 255, k_attack=1000, k_score=1000, steps=100, step_size=1 / 255, ig_steps=100),
}


def chen_protocol(dataset: str) -> TopKAttackProtocol:
    """Chen et al.'s top-k attack settings for ``dataset`` (one of :data:`CHEN_PROTOCOLS`)."""
    if dataset not in CHEN_PROTOCOLS:
        raise ValueError(f"dataset must be one of {tuple(CHEN_PROTOCOLS)}, got {dataset!r}")
    return CHEN_PROTOCOLS[dataset]
