"""Concept-based explanations, plain PyTorch: TCAV (concept activation vectors and their
significance test) and CRP (concept-conditional relevance heatmaps)."""

from concepts.cav import CAV, fit_cav, fit_cavs
from concepts.crp import CRP_COMPOSITES, ConceptHeatmaps, ConceptRelevance, build_composite
from concepts.layers import layer_activations, layer_gradients
from concepts.stats import TTest, ttest_ind
from concepts.tcav import ConceptCAVs, TCAVResult, fit_concept_cavs, tcav, tcav_scores, tcav_test

__all__ = [
    "CAV",
    "CRP_COMPOSITES",
    "ConceptHeatmaps",
    "ConceptRelevance",
    "build_composite",
    "ConceptCAVs",
    "TCAVResult",
    "TTest",
    "fit_cav",
    "fit_cavs",
    "fit_concept_cavs",
    "layer_activations",
    "layer_gradients",
    "tcav",
    "tcav_scores",
    "tcav_test",
    "ttest_ind",
]
