"""Attacks on the input, in [0, 1] pixel space, for any ``nn.Module`` (no Lightning here): PGD with
cross-entropy, margin or DLR losses, FGSM-RS, AutoAttack (the authors' implementation), and
attacks on explanations."""

from attacks.ascent import STEP_RULES, StepRule, projected_ascent
from attacks.attack_losses import (
    ATTACK_LOSSES,
    AttackLoss,
    LossFn,
    dlr_loss,
    margin_loss,
    per_example_cross_entropy,
)
from attacks.autoattack import AUTOATTACK_VERSIONS, AutoAttack, AutoAttackVersion
from attacks.base import EvaluationAttack
from attacks.explanation import (
    CRITERIA,
    ExplanationAttackResult,
    Selection,
    TopKExplanationAttack,
    default_topk,
    topk_mask,
)
from attacks.explanation_protocols import CHEN_PROTOCOLS, TopKAttackProtocol, chen_protocol
from attacks.fgsm import FGSM_RS_STEP_FACTOR, FGSMRandomStart
from attacks.pgd import PGD
from attacks.threat_models import NORMS, L2Threat, LinfThreat, Norm, ThreatModel, make_threat_model

__all__ = [
    "ATTACK_LOSSES",
    "AUTOATTACK_VERSIONS",
    "AttackLoss",
    "AutoAttack",
    "AutoAttackVersion",
    "CHEN_PROTOCOLS",
    "CRITERIA",
    "FGSM_RS_STEP_FACTOR",
    "FGSMRandomStart",
    "NORMS",
    "PGD",
    "STEP_RULES",
    "StepRule",
    "EvaluationAttack",
    "Selection",
    "ExplanationAttackResult",
    "L2Threat",
    "LinfThreat",
    "LossFn",
    "Norm",
    "ThreatModel",
    "TopKAttackProtocol",
    "TopKExplanationAttack",
    "chen_protocol",
    "default_topk",
    "dlr_loss",
    "make_threat_model",
    "margin_loss",
    "per_example_cross_entropy",
    "projected_ascent",
    "topk_mask",
]
