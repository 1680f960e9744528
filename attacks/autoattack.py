"""AutoAttack through the authors' own implementation, as an evaluation attack.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020. Robust accuracy under AutoAttack is the share of examples
classified correctly that none of four attacks breaks, each run only on the examples still
standing, in this order:

1. APGD-CE: auto-PGD (step size halved when the loss stops rising, momentum 0.75) on the
   cross-entropy, 100 iterations, 1 restart;
2. APGD-T: auto-PGD on the targeted DLR loss, 100 iterations against each of the 9 most likely
   other classes;
3. FAB-T: the targeted fast adaptive boundary attack (Croce & Hein, ICML 2020), 100
   iterations against each of the 9 most likely other classes;
4. Square: the score-based Square Attack (Andriushchenko et al., ECCV 2020), 5 000 queries.

These are the settings of the authors' ``version='standard'`` (pyautoattack's
``AutoAttack._set_version``; RobustBench reports nothing else). The attacks themselves are the
authors' code (the PyPI package ``pyautoattack``, Croce & Hein's repository); this module only
drives them the way ``run_standard_evaluation`` does, quietly (nothing printed or logged), with
the contract of :class:`attacks.PGD`: images in [0, 1], the model in eval mode during the attack
and handed back with its modes, its weights' ``.grad`` and the caller's random streams as it
found them, usable under ``torch.inference_mode()`` and autocast.

Versions (``version``):

- ``standard``: the four attacks above: the figure to quote.
- ``fast``: APGD-CE then APGD-T, same settings: the two gradient attacks, which on models
  without gradient masking find nearly every adversarial example the full ensemble finds
  (FAB-T and Square mostly confirm), at a fraction of the cost (no 5 000-query Square). A
  monitor during training; its figure is an upper bound on the standard one.

Where this departs from ``run_standard_evaluation``:

- **Fewer than 10 classes.** The authors target the 9 most likely other classes; with K < 10
  classes APGD-T and FAB-T target all K − 1 (their ``n_target_classes``). The targeted DLR loss
  needs 4 classes: with 3, APGD-T is replaced by APGD-DLR (untargeted DLR, also the authors'
  attack); with 2 (no DLR loss at all), the fast version runs APGD-CE then FAB-T.
- **Seeding** (``seeding="example"``, the default): every random draw depends on the example,
  never on the batch, so that the same image gets the same result in any batch, position or
  process (DDP). APGD's random starts (the authors' distribution: x + ε·t/‖t‖ with t uniform in
  [−1, 1]ᵈ under L∞, Gaussian under L2) are drawn per example from the image's content id and
  the run's index (:mod:`common.example_noise`) and passed as the authors' ``x_init``. FAB-T
  with one restart draws nothing. Square draws its squares for the whole batch, so it is run
  on one example at a time, each with its own seed: exact, but on a GPU Square then costs a
  forward pass per query and example (it only runs on the examples that survive the three
  gradient attacks). ``seeding="batch"`` is the authors' scheme: every sub-attack seeds the
  global generator with ``seed`` and draws for its whole batch; the result then equals
  ``run_standard_evaluation`` with the same batch (tested) but depends on how the examples
  are batched, and under DDP on how they are split.
- The authors' diagnostic checks (randomised or dynamic defences, probabilities instead of
  logits) are not run; APGD's zero-gradient warnings are kept in :attr:`AutoAttack.notes`
  instead of being logged, and what each sub-attack did (examples attacked, left standing,
  seconds: the authors' running printout) in :attr:`AutoAttack.stages`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack
from torch import Tensor, nn

from attacks.base import EvaluationAttack
from attacks.threat_models import Norm, make_threat_model
from common.example_noise import content_ids, example_noise, example_seed
from common.modes import module_mode

AutoAttackVersion = Literal["standard", "fast"]
AUTOATTACK_VERSIONS: tuple[str, ...] = ("standard", "fast")
Seeding = Literal["example", "batch"]
SEEDINGS: tuple[str, ...] = ("example", "batch")

#: The authors' standard settings under L∞ and L2 (pyautoattack ``AutoAttack._set_version``).
APGD_ITERATIONS = 100
APGD_RESTARTS = 1
APGD_RHO = 0.75
MAX_TARGET_CLASSES = 9
FAB_ITERATIONS = 100
FAB_RESTARTS = 1
SQUARE_QUERIES = 5000
SQUARE_P_INIT = 0.8

_AUTHORS_NORM = {"linf": "Linf", "l2": "L2"}
_STREAMS = {"apgd-ce": 0xA9D0, "apgd-dlr": 0xA9D1, "apgd-t": 0xA9D2, "square": 0x5C0A}  # independent draws


def sub_attacks(version: str, num_classes: int) -> tuple[str, ...]:
    """The authors' names of the attacks ``version`` runs, in order, on ``num_classes`` classes.

    ``apgd-ce``, ``apgd-t``, ``fab-t``, ``square`` with at least 4 classes; ``apgd-dlr`` in place
    of ``apgd-t`` with 3 (the targeted DLR loss needs 4); with 2, no DLR attack, and the fast
    version runs FAB-T instead.
    """
    if version not in AUTOATTACK_VERSIONS:
        raise ValueError(f"version must be one of {AUTOATTACK_VERSIONS}, got {version!r}")
    if num_classes < 2:
        raise ValueError(f"AutoAttack needs a classifier with at least 2 classes, got {num_classes}")
    if num_classes >= 4:
        dlr: tuple[str, ...] = ("apgd-t",)
    elif num_classes == 3:
        dlr = ("apgd-dlr",)
    else:
        dlr = ()
    if version == "fast":
        return ("apgd-ce", *dlr) if dlr else ("apgd-ce", "fab-t")
    return ("apgd-ce", *dlr, "fab-t", "square")


def target_classes(num_classes: int) -> int:
    """How many other classes APGD-T and FAB-T target: 9, or all K − 1 when fewer."""
    return min(MAX_TARGET_CLASSES, num_classes - 1)


@dataclass(frozen=True)
class Stage:
    """What one sub-attack did in the last call.

    Attributes:
        attack: the authors' name (``apgd-ce``, ``apgd-t``, ``apgd-dlr``, ``fab-t``, ``square``).
        attacked: examples it ran on (those still standing).
        robust: examples still standing after it (classified correctly, not broken).
        seconds: its wall time.
    """

    attack: str
    attacked: int
    robust: int
    seconds: float


class _Notes:
    """Stands in for the authors' logger: keeps each distinct message once, prints nothing."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def _keep(self, message: str, *args: Any, **kwargs: Any) -> None:
        if message not in self.messages:
            self.messages.append(message)

    debug = info = warning = _keep


class _ExampleStarts:
    """Mixin for the authors' APGD classes: random starts drawn per example, passed as ``x_init``.

    ``perturb`` calls ``attack_single_run`` once per (target class, restart), each time on the
    examples still standing; an example present in the j-th call was present in every earlier
    one, so (seed, content id, j) identifies its start whatever else shares the batch.
    """

    start_seed: int = 0
    stream: int = _STREAMS["apgd-ce"]
    runs: int = 0

    def attack_single_run(self, x: Tensor, y: Tensor, x_init: Tensor | None = None) -> Any:
        if x_init is None:
            ids = content_ids(x)
            distribution = "uniform" if self.norm == "Linf" else "normal"  # type: ignore[attr-defined]
            t = example_noise(tuple(x.shape[1:]), ids, self.start_seed, self.stream, self.runs, distribution)
            if distribution == "uniform":
                t = 2.0 * t - 1.0
                size = t.flatten(1).abs().amax(dim=1)
            else:
                size = t.flatten(1).norm(dim=1)
            # The authors' start: x + ε·t/‖t‖ (their normalize() adds 1e-12 to the norm).
            x_init = x + self.eps * t / (size.view(-1, *([1] * (x.dim() - 1))) + 1e-12)  # type: ignore[attr-defined]
        self.runs += 1
        return super().attack_single_run(x, y, x_init=x_init)  # type: ignore[misc]


class _SeededAPGD(_ExampleStarts, APGDAttack):
    """The authors' APGD (CE or DLR loss) with per-example random starts."""


class _SeededAPGDTargeted(_ExampleStarts, APGDAttack_targeted):
    """The authors' APGD-T (targeted DLR loss) with per-example random starts."""


class _SeededSquare(SquareAttack):
    """The authors' Square Attack run on one example at a time, each seeded by its content id."""

    start_seed: int = 0

    def perturb(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        assert y is not None
        rows = []
        for i, example_id in enumerate(content_ids(x).tolist()):
            self.seed = example_seed(self.start_seed, _STREAMS["square"], int(example_id), 0)
            rows.append(super().perturb(x[i : i + 1], y[i : i + 1]))
        return torch.cat(rows) if rows else x.clone()


@contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters that need no gradient for a while: FAB calls ``.backward()`` on the logits,
    which would otherwise add into the weights' ``.grad``; the flags are restored on exit."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _cuda_devices(x: Tensor) -> list[int]:
    devices = {x.device.index or 0} if x.device.type == "cuda" else set()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices.add(torch.cuda.current_device())  # the authors seed the current CUDA device too
    return sorted(devices)


class AutoAttack(EvaluationAttack):
    """AutoAttack (Croce & Hein, ICML 2020) under L∞ or L2, through the authors' implementation.

    ``AutoAttack(eps=8/255)(model, x, y)`` returns, for each example, an adversarial example
    one of the attacks found, or the clean input where none did (and where x is misclassified).

    Args:
        eps: radius of the threat model, in [0, 1] pixel units (ε ≤ 1 under L∞).
        norm: "linf" or "l2".
        version: "standard" (APGD-CE, APGD-T, FAB-T, Square: the figure to quote) or "fast"
            (APGD-CE, APGD-T: a monitor, an upper bound on the standard figure).
        seed: seed of every random draw.
        seeding: "example" (each example's draws depend on its pixels and ``seed`` only: the
            same result in any batch and process) or "batch" (the authors' scheme, identical
            to ``run_standard_evaluation`` on the same batch). See the module docstring.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        norm: Norm = "linf",
        version: AutoAttackVersion = "standard",
        seed: int = 0,
        seeding: Seeding = "example",
    ) -> None:
        self.threat = make_threat_model(norm, eps)
        if version not in AUTOATTACK_VERSIONS:
            raise ValueError(f"version must be one of {AUTOATTACK_VERSIONS}, got {version!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if seeding not in SEEDINGS:
            raise ValueError(f"seeding must be one of {SEEDINGS}, got {seeding!r}")
        self.eps = self.threat.eps
        self.norm = norm
        self.version = version
        self.seed = seed
        self.seeding = seeding
        self.notes: list[str] = []
        self.stages: list[Stage] = []

    def __repr__(self) -> str:
        return f"AutoAttack(norm={self.norm}, eps={self.eps:g}, version={self.version}, seed={self.seed}, seeding={self.seeding})"

    @property
    def name(self) -> str:
        """``autoattack`` (standard) or ``autoattack-fast``: the name in logged keys and tables."""
        return "autoattack" if self.version == "standard" else f"autoattack-{self.version}"

    def check_num_classes(self, num_classes: int) -> None:
        """Raise a ValueError when the attacks cannot run on ``num_classes`` classes (fewer than 2)."""
        sub_attacks(self.version, num_classes)

    def at_eps(self, eps: float) -> AutoAttack:
        """A copy of this attack at radius ``eps`` (AutoAttack has no step size to scale)."""
        scaled = copy.copy(self)
        scaled.threat = make_threat_model(self.norm, eps)
        scaled.eps = scaled.threat.eps
        scaled.notes, scaled.stages = [], []
        return scaled

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples for ``model`` at labels ``y``.

        Args:
            model: any classifier taking images in [0, 1] and returning logits.
            x: (B, C, H, W) clean inputs in [0, 1].
            y: (B,) labels.

        Returns:
            (B, C, H, W) detached inputs inside the ε-ball and [0, 1]: the adversarial example an
            attack found, or x where none did.
        """
        notes = _Notes()
        self.notes, self.stages = notes.messages, []
        if self.eps == 0.0 or x.shape[0] == 0:
            return x.detach().clone()
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            module_mode(model, "eval"),
            _frozen_parameters(model),
            torch.random.fork_rng(devices=_cuda_devices(x)),
        ):
            x = (x.clone() if x.is_inference() else x).detach()
            y = (y.clone() if y.is_inference() else y).detach().long()

            def predict(t: Tensor) -> Tensor:
                return model(t).float()  # float32 logits also under autocast

            with torch.no_grad():
                logits = predict(x)
            robust = logits.argmax(dim=1) == y  # (B,)
            x_adv = x.clone()
            for name in sub_attacks(self.version, logits.shape[1]):
                if not bool(robust.any()):
                    break
                started = time.perf_counter()
                alive = robust.nonzero().squeeze(1)  # (A,)
                attack = self._build(name, predict, x.device, logits.shape[1], notes)
                adv = attack.perturb(x[alive].clone(), y[alive].clone()).detach()
                with torch.no_grad():
                    fooled = predict(adv).argmax(dim=1) != y[alive]
                robust[alive[fooled]] = False
                x_adv[alive[fooled]] = adv[fooled].to(x_adv.dtype)
                self.stages.append(Stage(name, int(alive.numel()), int(robust.sum()), time.perf_counter() - started))
        return x_adv

    def _build(
        self, name: str, predict: Callable[[Tensor], Tensor], device: torch.device, num_classes: int, notes: _Notes
    ) -> Any:
        """The authors' attack object ``name`` with the standard settings."""
        norm, eps, per_example = _AUTHORS_NORM[self.norm], self.eps, self.seeding == "example"
        if name in ("apgd-ce", "apgd-dlr"):
            cls = _SeededAPGD if per_example else APGDAttack
            attack = cls(
                predict, n_iter=APGD_ITERATIONS, norm=norm, n_restarts=APGD_RESTARTS, eps=eps, seed=self.seed,
                loss="ce" if name == "apgd-ce" else "dlr", eot_iter=1, rho=APGD_RHO, device=device, logger=notes,
            )  # fmt: skip
        elif name == "apgd-t":
            cls = _SeededAPGDTargeted if per_example else APGDAttack_targeted
            attack = cls(
                predict, n_iter=APGD_ITERATIONS, norm=norm, n_restarts=APGD_RESTARTS, eps=eps, seed=self.seed,
                eot_iter=1, rho=APGD_RHO, n_target_classes=target_classes(num_classes), device=device, logger=notes,
            )  # fmt: skip
        elif name == "fab-t":
            # One restart: FAB-T starts from x itself and draws nothing (restarts > 0 start at random).
            attack = FABAttack_PT(
                predict, norm=norm, n_restarts=FAB_RESTARTS, n_iter=FAB_ITERATIONS, eps=eps, seed=self.seed,
                targeted=True, device=device, n_target_classes=target_classes(num_classes),
            )  # fmt: skip
        else:
            cls = _SeededSquare if per_example else SquareAttack
            attack = cls(
                predict, norm=norm, n_queries=SQUARE_QUERIES, eps=eps, p_init=SQUARE_P_INIT, n_restarts=1,
                seed=self.seed, verbose=False, device=device, resc_schedule=False,
            )  # fmt: skip
        if isinstance(attack, (_ExampleStarts, _SeededSquare)):
            attack.start_seed = self.seed
        if isinstance(attack, _ExampleStarts):
            attack.stream = _STREAMS[name]
        return attack
