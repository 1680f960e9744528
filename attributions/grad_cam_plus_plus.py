"""Grad-CAM++ (Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized
Gradient-Based Visual Explanations for Deep Convolutional Networks", WACV 2018).

Grad-CAM with each channel's weight built from the positive gradients, each weighted by how
much of the class score its position explains. For the activations A (B, K, h, w) of the layer,
g = ∂S_t/∂A with S_t the target logit:

    α_k[i, j] = g_k[i, j]² / (2 g_k[i, j]² + Σ_{a,b} A_k[a, b] · g_k[i, j]³)   (0 where the denominator is 0)
    w_k       = Σ_{i,j} α_k[i, j] · ReLU(g_k[i, j])
    CAM       = ReLU(Σ_k w_k A_k)

upsampled bilinearly to the input and spread over its channels like Grad-CAM
(:mod:`attributions.grad_cam`), on the same layer (:func:`attributions.default_gradcam_layer`).

The paper explains Y_t = exp(S_t) and writes the higher derivatives of Y through those of S_t,
assuming a piecewise-linear network (second and third derivatives of S_t with respect to A
vanish); its eq. 19 is the α above, where exp(S_t) cancels. It remains as a positive factor
exp(S_t) of every w_k of one example, which scales that example's map without changing its
shape; it is left out, as in jacobgil's pytorch-grad-cam (exp of a logit overflows float32 for
logits above 88). The authors' code also renormalises α over positions; the paper does not, and
neither does this class.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attributions.grad_cam import GradCAM


class GradCAMPlusPlus(GradCAM, name="grad_cam_plus_plus"):
    """Grad-CAM++ of one layer, upsampled to the input size.

    Args:
        layer: name of the module whose output is used; None takes the model's Grad-CAM layer
            (:func:`attributions.default_gradcam_layer`).
        relu: apply the final ReLU of the paper.
        create_graph: keep the graph (training through the explanation, attacking it).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    def channel_weights(self, activations: Tensor, grad: Tensor) -> Tensor:
        """w_k = Σ_ij α_k[i, j] ReLU(g_k[i, j]): (B, K, h, w) each -> (B, K, 1, 1)."""
        g2 = grad.pow(2)  # (B, K, h, w)
        total = activations.sum(dim=(2, 3), keepdim=True)  # (B, K, 1, 1): Σ_ab A_k[a, b]
        denominator = 2 * g2 + total * grad.pow(3)
        nonzero = denominator != 0
        alpha = g2 / torch.where(nonzero, denominator, torch.ones_like(denominator))
        alpha = torch.where(nonzero, alpha, torch.zeros_like(alpha))
        return (alpha * grad.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
