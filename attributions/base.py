"""The shape every attribution method has, and the plumbing they share.

A method is an object, configured once and called as ``method(model, inputs, target=None)``:

- ``model``: any ``nn.Module`` taking images in [0, 1] and returning logits (B, num_classes);
- ``inputs``: (B, C, H, W) images;
- ``target``: (B,) class indices to explain, or None for the model's predicted class;
- result: a tensor shaped like ``inputs`` (Φ(x), one relevance per input element).

Gradient-based methods take ``create_graph`` in their constructor. With ``create_graph=False``
(evaluation) the result is detached and no graph survives the call. With ``create_graph=True``
(a regulariser or an attack on the explanation) the result stays attached to the model's
parameters and, when ``inputs`` itself requires grad, to ``inputs``, so that a loss on Φ(x) can
be differentiated further.

Every call leaves the model's train/eval flags, its weights' ``.grad`` and the input's
``requires_grad`` as it found them: gradients are taken with ``torch.autograd.grad`` with
respect to a detached copy of the input (or the caller's own graph input) only.

Names: :class:`AttributionMethod` owns the registry of methods by name
(:class:`common.registry.NameRegistry`), and a method joins it in its class statement::

    class Saliency(GradientAttribution, name="saliency", default_in=("report", "callbacks")): ...

``default_in`` says which default method lists the name joins (:data:`DEFAULT_LISTS`):
"report" (the methods ``train.py report`` compares when ``methods`` is not given) unless told
otherwise, "callbacks" (those :class:`callbacks.ExplanationMonitor` and
:class:`callbacks.SanityCheck` explain while training) only when asked, as every extra method
there costs training time. A method that needs configuration before it means anything says
``default_in=()``. :func:`register_method` registers a further name for a class with some of
its arguments fixed (the noise tunnels: ``register_method("vargrad", SmoothGrad, kind="vargrad")``).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from common.modes import MODEL_MODES, ModelMode, module_mode
from common.registry import NameRegistry

Method = TypeVar("Method", bound="AttributionMethod")

#: The default method lists a name can join: "report" (``train.py report`` without ``methods``)
#: and "callbacks" (ExplanationMonitor and SanityCheck without ``methods``).
DEFAULT_LISTS: tuple[str, ...] = ("report", "callbacks")
#: The lists a name joins when its class statement or :func:`register_method` does not say.
DEFAULT_IN: tuple[str, ...] = ("report",)


def normal_tensor(t: Tensor) -> Tensor:
    """``t`` itself, or a copy usable by autograd when it was made under inference mode."""
    return t.clone() if t.is_inference() else t


def check_model_mode(model_mode: ModelMode | None) -> ModelMode | None:
    """Validate a ``model_mode`` argument ("eval", "train" or None)."""
    if model_mode is not None and model_mode not in MODEL_MODES:
        raise ValueError(f"model_mode must be one of {MODEL_MODES} or None, got {model_mode!r}")
    return model_mode


def check_target(inputs: Tensor, target: Tensor | None) -> None:
    """Raise a ValueError unless ``target`` is None or a (B,) integer tensor for ``inputs``."""
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be (B, C, H, W), got shape {tuple(inputs.shape)}")
    if target is None:
        return
    if target.dim() != 1 or target.shape[0] != inputs.shape[0]:
        raise ValueError(f"target must be a (B,) tensor with B = {inputs.shape[0]}, got shape {tuple(target.shape)}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")


def select_logits(logits: Tensor, target: Tensor) -> Tensor:
    """The logit of class ``target[i]`` of each example: (B, K), (B,) -> (B,)."""
    return logits.gather(1, target.long().view(-1, 1)).squeeze(1)


@torch.no_grad()
def predicted_class(model: nn.Module, inputs: Tensor) -> Tensor:
    """(B,) argmax of the model's logits (no graph)."""
    return model(inputs).argmax(dim=1)


class AttributionMethod(ABC):
    """Base class: validates the call, picks the model mode, makes gradients possible.

    Subclasses implement :meth:`attribute`, which runs with gradients enabled (also when the
    caller is under ``torch.inference_mode()``, as Lightning's validation loop is), with the
    model in ``model_mode`` and with a ``target`` that is never None.

    Args:
        model_mode: mode of the model while explaining: "eval" (BatchNorm on running
            statistics, dropout off: explanations of the deployed model), "train", or None to
            leave the model's flags as they are.
    """

    #: whether the method's result depends on the model at all (the edge and random controls do not)
    uses_model: bool = True
    #: whether :meth:`with_create_graph` gives a result differentiable in the input and the
    #: weights (methods built on modified backward passes or on forward passes alone are not)
    differentiable: bool = True
    #: whether one call costs many forward passes per image (occlusion's windows, Score-CAM's
    #: channels): a ``--fast`` report leaves such methods out of its default list.
    costly: bool = False
    #: every method by name (filled by the subclasses' class statements and :func:`register_method`)
    registry: ClassVar[NameRegistry[AttributionMethod]] = NameRegistry("method")
    #: name -> the default lists (:data:`DEFAULT_LISTS`) it belongs to
    default_lists: ClassVar[dict[str, frozenset[str]]] = {}

    def __init_subclass__(cls, name: str | None = None, default_in: Sequence[str] = DEFAULT_IN, **kwargs: Any) -> None:
        """Register the subclass as ``name`` (none: an intermediate base, not registered)."""
        super().__init_subclass__(**kwargs)
        if name is not None:
            register_method(name, cls, default_in=default_in)

    def __init__(self, model_mode: ModelMode | None = "eval") -> None:
        self.model_mode = check_model_mode(model_mode)
        self.create_graph = False

    def __call__(self, model: nn.Module, inputs: Tensor, target: Tensor | None = None) -> Tensor:
        """Φ(inputs) for class ``target`` (None: the predicted class), shaped like ``inputs``."""
        check_target(inputs, target)
        with torch.inference_mode(False), torch.enable_grad(), module_mode(model, self.model_mode):
            inputs = normal_tensor(inputs)
            if target is None:
                target = predicted_class(model, inputs.detach()) if self.uses_model else None
            else:
                target = normal_tensor(target)
            attribution = self.attribute(model, inputs, target)  # type: ignore[arg-type]
        return attribution if self.create_graph else attribution.detach()

    def check_model(self, model: nn.Module) -> None:
        """Raise a ValueError naming the problem when the method cannot explain ``model`` (a
        layer it does not have, an architecture its rules do not cover); nothing by default.
        Cheap: callers (the report's plan) run it before any work starts."""

    @abstractmethod
    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        """The attribution of ``target`` for ``inputs`` (called by ``__call__``)."""

    def with_create_graph(self: Method, create_graph: bool = True) -> Method:
        """A copy of this method with ``create_graph`` set (an attack on the explanation needs
        a differentiable version of the method it attacks).

        Raises:
            ValueError: ``create_graph`` asked of a method that is not :attr:`differentiable`
                (rather than an attack that silently never moves).
        """
        if create_graph and not self.differentiable:
            raise ValueError(
                f"method {type(self).__name__} is not differentiable (create_graph): an attack on its explanation "
                f"or a loss on it needs one of {differentiable_names()}"
            )
        clone = copy.copy(self)
        clone.create_graph = bool(create_graph)
        return clone

    def _input(self, inputs: Tensor) -> Tensor:
        """The tensor to differentiate with respect to.

        With ``create_graph`` and an input that is already part of the caller's graph, the input
        itself (so Φ stays differentiable with respect to it); otherwise a detached alias that
        requires grad (the caller's tensor keeps its own ``requires_grad``).
        """
        if self.create_graph and inputs.requires_grad:
            return inputs
        return inputs.detach().requires_grad_(True)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class GradientAttribution(AttributionMethod):
    """Base class of methods built on ∇ₓ of the target logit.

    Args:
        create_graph: keep the graph of the gradient so the attribution can be differentiated
            (training through it, attacking it). Only when the result feeds a loss.
        model_mode: see :class:`AttributionMethod`.
    """

    def __init__(self, create_graph: bool = False, model_mode: ModelMode | None = "eval") -> None:
        super().__init__(model_mode)
        self.create_graph = bool(create_graph)

    def input_gradient(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """∂ logit_target / ∂x for a batch ``x`` that requires grad: (B, C, H, W)."""
        score = select_logits(model(x), target)  # (B,)
        # Summing per-example logits gives each example its own gradient (examples are
        # independent in eval mode); only the input's gradient is computed.
        (grad,) = torch.autograd.grad(score.sum(), [x], create_graph=self.create_graph)
        return grad


def differentiable_names() -> tuple[str, ...]:
    """The registered names whose methods give differentiable results (:attr:`AttributionMethod.differentiable`)."""
    registry = AttributionMethod.registry
    return tuple(n for n in registry.names() if registry.entry(n).cls.differentiable)


def register_method(name: str, cls: type[AttributionMethod], *, default_in: Sequence[str] = DEFAULT_IN, **fixed: Any) -> None:
    """Register ``name`` for the attribution method ``cls`` with constructor arguments ``fixed``.

    Args:
        name: the name recipes, callbacks and the report use.
        cls: a subclass of :class:`AttributionMethod`.
        default_in: the default method lists the name joins (:data:`DEFAULT_LISTS`).
        fixed: constructor arguments the name fixes (they are no longer options of the name).

    Raises:
        ValueError: a name taken by another class, or an unknown default list.
    """
    if not (isinstance(cls, type) and issubclass(cls, AttributionMethod)):
        raise ValueError(f"a method registered as {name!r} must be an AttributionMethod subclass, got {cls!r}")
    if isinstance(default_in, str) or not set(default_in) <= set(DEFAULT_LISTS):
        raise ValueError(f"default_in of method {name!r} must be a list among {DEFAULT_LISTS}, got {default_in!r}")
    AttributionMethod.registry.register(name, cls, **fixed)
    AttributionMethod.default_lists[name] = frozenset(default_in)
