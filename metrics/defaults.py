"""The default metric lists of the monitoring callback and of the report, in one place.

Each name is checked against the registry when the package is imported, so a renamed metric
fails here, not in a run.
"""

from __future__ import annotations

from metrics.base import ExplanationMetric

#: ExplanationMonitor: robustness of the explanation to uniform noise in the ε-ball (one extra
#: attribution per example).
MONITOR_METRICS: tuple[str, ...] = ("topk_intersection@noise", "spearman@noise")
#: ExplanationMonitor, added when the datamodule has ground-truth masks (nearly free: no forward pass).
MONITOR_MASK_METRICS: tuple[str, ...] = ("relevance_mass", "pointing_game")
#: The report: one metric per question (stable under noise and under an attack on the
#: prediction, sensitive to small input changes, faithful to the model, dependent on the learnt
#: weights).
REPORT_METRICS: tuple[str, ...] = (
    "topk_intersection@noise",
    "topk_intersection@pgd",
    "max_sensitivity",
    "infidelity",
    "deletion_auc",
    "insertion_auc",
    "randomisation",
)
#: The report, with ground-truth object masks.
REPORT_MASK_METRICS: tuple[str, ...] = ("pointing_game", "relevance_mass", "relevance_rank")
#: The report, with spurious-patch masks.
REPORT_SPURIOUS_METRICS: tuple[str, ...] = ("spurious_share",)

for _name in (*MONITOR_METRICS, *MONITOR_MASK_METRICS, *REPORT_METRICS, *REPORT_MASK_METRICS, *REPORT_SPURIOUS_METRICS):
    ExplanationMetric.registry.check(_name)
