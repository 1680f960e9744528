"""Attacks on the input, in [0, 1] pixel space, for any ``nn.Module`` (no Lightning here)."""

from attacks.fgsm import FGSM_RS_STEP_FACTOR, FGSMRandomStart
from attacks.modes import MODEL_MODES, ModelMode, module_mode
from attacks.pgd import PGD, LossFn, per_example_cross_entropy
from attacks.threat_models import NORMS, L2Threat, LinfThreat, Norm, ThreatModel, make_threat_model

# After the modules above: attacks.explanation imports attributions, which imports attacks.modes.
from attacks.explanation import (  # noqa: E402
    CRITERIA,
    ExplanationAttackResult,
    Selection,
    TopKExplanationAttack,
    default_topk,
    topk_mask,
)
from attacks.explanation_protocols import CHEN_PROTOCOLS, TopKAttackProtocol, chen_protocol  # noqa: E402

__all__ = [
    "CHEN_PROTOCOLS",
    "CRITERIA",
    "FGSM_RS_STEP_FACTOR",
    "FGSMRandomStart",
    "MODEL_MODES",
    "NORMS",
    "PGD",
    "Selection",
    "ExplanationAttackResult",
    "L2Threat",
    "LinfThreat",
    "LossFn",
    "ModelMode",
    "Norm",
    "ThreatModel",
    "TopKAttackProtocol",
    "TopKExplanationAttack",
    "chen_protocol",
    "default_topk",
    "make_threat_model",
    "module_mode",
    "per_example_cross_entropy",
    "topk_mask",
]
