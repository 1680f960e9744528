"""Attribution methods and helpers for any ``nn.Module`` (no Lightning here)."""

from attributions.activations import count_relus, relu_to_softplus, softplus_relus

__all__ = ["count_relus", "relu_to_softplus", "softplus_relus"]
