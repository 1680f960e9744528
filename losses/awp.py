"""AWP: adversarial weight perturbation around any adversarial-training objective.

Wu, Xia & Wang, "Adversarial Weight Perturbation Helps Robust Generalization", NeurIPS 2020:

    min_w max_{‖v_l‖ ≤ γ‖w_l‖ ∀l} L(w + v),

where L is the training objective on the step's adversarial examples (PGD-AT's cross-entropy,
TRADES' loss, ...). One step of ascent on the weights approximates the inner maximum, layer by
layer relative to each layer's norm:

    v_l = γ · ‖w_l‖ · ∇_l L(w) / ‖∇_l L(w)‖,

and the gradient step is taken at the perturbed point but applied to the unperturbed weights:

    w ← w − lr · ∇L(w + v)        (for SGD without momentum; any optimiser gets ∇L(w + v)).

Following the authors' code (github.com/csdongxian/AWP, ``utils_awp.py``):

- the adversarial examples are computed first, at w, and the same examples serve both the
  ascent and the step (``prepare`` of the wrapped objective);
- the ascent loss is the training loss itself on those examples, with the model in training
  mode; its forward does not change BatchNorm's running statistics (the authors run it on a
  copy of the model), the forward at w + v does, as an ordinary step's;
- only weights of two or more dimensions whose name ends in ``weight`` are perturbed
  (convolution and linear kernels); biases and normalisation scales and shifts are not;
- one ascent step; γ = 5e-3 for TRADES-AWP (``train_trades_cifar.py``) and 1e-2 for AT-AWP
  (``train_cifar10.py`` and its logs);
- optionally no perturbation for the first steps (``start_step``; TRADES-AWP starts at
  epoch 10).

Departures, none of which changes the algorithm:

- The authors add v to the weights in place, step, and subtract v (leaving (w + v) − v, which
  differs from w by rounding, and applying weight decay at w + v). Here the weights are never
  modified: the forward at w + v is ``torch.func.functional_call`` with the tensors w + v (v a
  constant), so back-propagation puts exactly ∇L(w + v) into ``w.grad`` and the optimiser,
  weight decay included, steps from w itself. Nothing of v remains after the step.
- The ascent direction is the exact gradient ∇L(w), normalised per layer, where the authors
  take one SGD step on a copy of the model and normalise the difference (the same direction).
- Under DDP the ascent gradient is averaged across processes (``sync_processes``), so every
  process perturbs the weights by the same v, the one a single process would compute on the
  whole batch (the authors' ``DataParallel`` does the same). It is taken with
  ``torch.autograd.grad`` on the parameters: that computes no ``.grad`` and runs none of the
  hooks DDP attaches to the parameters' gradient accumulators, so DDP's own all-reduce
  happens once, in the backward of the loss this objective returns.

YAML (TRADES-AWP)::

    objective:
      class_path: losses.AWP
      init_args:
        gamma: 0.005
        objective: {class_path: losses.TRADES, init_args: {beta: 6.0, attack: {...}}}

Composition: ``AWP(WeightedSum([PGD-AT, a regulariser]))`` perturbs the weights for the whole
sum; ``WeightedSum([AWP(PGD-AT), a regulariser])`` only for the adversarial loss, with the
regulariser evaluated at w (the two share the step's adversarial examples either way).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from losses.base import Objective, ObjectiveOutput, StepContext

NORM_FLOOR = 1e-20
"""Added to ‖∇_l L‖ before dividing, as the authors' ``EPS``: a layer without gradient gets v_l = 0."""


def perturbed_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters AWP perturbs: trainable, at least 2-D, named ``...weight``.

    Convolution and linear kernels (and a ViT's patch-embedding and attention matrices); not
    biases, normalisation parameters or embeddings such as a ViT's class token.
    """
    return {
        name: p
        for name, p in model.named_parameters()
        if p.requires_grad and p.dim() > 1 and name.rsplit(".", 1)[-1] == "weight"
    }


def relative_ascent(weights: list[Tensor], grads: list[Tensor], gamma: float) -> list[Tensor]:
    """v_l = γ · ‖w_l‖ · g_l / (‖g_l‖ + 1e-20) for each layer l (Frobenius norms), detached."""
    return [(gamma * w.detach().norm() / (g.norm() + NORM_FLOOR)) * g for w, g in zip(weights, grads)]


def average_across_processes(tensors: list[Tensor]) -> list[Tensor]:
    """The mean of ``tensors`` over the processes of the default group (one all-reduce); as
    they are when torch.distributed is not initialised or has one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    return [chunk.view_as(t) for chunk, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


class WithTensors(nn.Module):
    """``model`` called with some of its parameters or buffers replaced (``torch.func.functional_call``).

    The model is a registered child, so ``train()``/``eval()`` and the attacks' mode switches
    reach it; its own tensors are never written to.
    """

    def __init__(self, model: nn.Module, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        self.model = model
        self.tensors = tensors

    def forward(self, x: Tensor) -> Tensor:
        return torch.func.functional_call(self.model, self.tensors, (x,), strict=False)


def with_private_buffers(model: nn.Module) -> WithTensors:
    """``model`` with copies of its buffers: forwards in training mode update the copies'
    BatchNorm statistics, not the model's (the authors' proxy model)."""
    return WithTensors(model, {name: b.detach().clone() for name, b in model.named_buffers()})


class AWP(Objective):
    """Adversarial weight perturbation around a training objective (see the module doc).

    Args:
        objective: the objective to perturb the weights for: ``losses.PGDAdversarialTraining``,
            ``losses.TRADES``, ``losses.MART``, or a ``losses.WeightedSum`` of one of them with
            regularisers.
        gamma: γ > 0, the size of each layer's perturbation relative to its norm (5e-3 for
            TRADES-AWP, 1e-2 for AT-AWP in the authors' code).
        start_step: training steps before the perturbation is applied (the objective alone
            trains until then; 0: from the first step).
        sync_processes: under DDP, average the ascent gradient across processes (one
            all-reduce of the perturbed weights' size per step), so that v is the whole batch's;
            off, each process perturbs by its own share's direction (cheaper, no longer the
            single-process algorithm).

    Logs the wrapped objective's parts at w + v (``train/acc`` counts its logits there, as the
    authors' training accuracy) and ``unperturbed_loss``, the objective's loss at w.
    """

    log_name = "awp"

    def __init__(
        self, objective: Objective, gamma: float = 5e-3, start_step: int = 0, sync_processes: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(objective, nn.Module) or not callable(getattr(objective, "prepare", None)):
            raise ValueError(f"objective must be a robustlens objective (losses.Objective), got {objective!r}")
        if any(isinstance(m, AWP) for m in objective.modules()):
            raise ValueError("objective must not contain another AWP: one weight perturbation per step")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if int(start_step) != start_step or start_step < 0:
            raise ValueError(f"start_step must be an integer >= 0, got {start_step}")
        self.objective = objective
        self.gamma = float(gamma)
        self.start_step = int(start_step)
        self.sync_processes = bool(sync_processes)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))  # in checkpoints: resumes keep the count
        self._steps: int | None = None  # Python mirror of steps_seen: no device sync per step

    @property
    def stop_requested(self) -> str | None:
        return getattr(self.objective, "stop_requested", None)

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        self.objective.prepare(model, x, y, context)

    def _active(self) -> bool:
        """Whether this step is perturbed; advances the step count."""
        if self._steps is None:
            self._steps = int(self.steps_seen)
        step = self._steps
        self._steps += 1
        self.steps_seen += 1
        return step >= self.start_step

    def weight_perturbation(
        self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext
    ) -> tuple[dict[str, Tensor], Tensor]:
        """v for each perturbed weight (detached), and the objective's loss at w (detached).

        The objective's inputs must be in ``context`` already (:meth:`prepare`); it is evaluated
        in a :meth:`StepContext.branch` on the model with private buffers.
        """
        weights = perturbed_parameters(model)
        if not weights:
            raise ValueError("objective: AWP found no weight to perturb (no trainable parameter of 2+ dimensions named 'weight')")
        ascent = self.objective(with_private_buffers(model), x, y, context.branch())
        grads = torch.autograd.grad(ascent.loss, list(weights.values()), allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g.detach() for w, g in zip(weights.values(), grads)]
        if self.sync_processes:
            grads = average_across_processes(grads)
        v = relative_ascent(list(weights.values()), grads, self.gamma)
        return dict(zip(weights, v)), ascent.loss.detach()

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        context = StepContext() if context is None else context
        if not self._active():
            return self.objective(model, x, y, context)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16:
            raise RuntimeError(
                "AWP does not support float16 autocast (precision 16-mixed): the ascent gradient is taken "
                "without the loss scaling Lightning holds and can underflow. Use precision bf16-mixed or 32."
            )
        self.objective.prepare(model, x, y, context)
        v, unperturbed_loss = self.weight_perturbation(model, x, y, context)
        perturbed = {name: p + v[name] for name, p in model.named_parameters() if name in v}
        out = self.objective(WithTensors(model, perturbed), x, y, context.branch())
        logs = {**out.logs, "unperturbed_loss": unperturbed_loss}
        return ObjectiveOutput(out.loss, logs, out.logits, out.logits_adv)
