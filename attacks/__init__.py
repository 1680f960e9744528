"""Attacks on the input, in [0, 1] pixel space, for any ``nn.Module`` (no Lightning here)."""

from attacks.fgsm import FGSM_RS_STEP_FACTOR, FGSMRandomStart
from attacks.modes import MODEL_MODES, ModelMode, module_mode
from attacks.pgd import PGD, LossFn, per_example_cross_entropy
from attacks.threat_models import NORMS, L2Threat, LinfThreat, Norm, ThreatModel, make_threat_model

__all__ = [
    "FGSM_RS_STEP_FACTOR",
    "FGSMRandomStart",
    "MODEL_MODES",
    "NORMS",
    "PGD",
    "L2Threat",
    "LinfThreat",
    "LossFn",
    "ModelMode",
    "Norm",
    "ThreatModel",
    "make_threat_model",
    "module_mode",
    "per_example_cross_entropy",
]
