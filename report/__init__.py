"""Analysis reports of a trained classifier: ``python train.py report`` (:mod:`cli.report`).

From a Lightning checkpoint or an export bundle and a dataset (by default the one the run
recorded), a report folder holds a table of every attribution method × explanation metric on
test examples (``report.json`` with the settings used, ``report.md``), a figure of the
attributions of a few examples, and accuracy against ε under cross-entropy, margin and DLR PGD and
AutoAttack side by side, with their per-example worst case (a plot and a table).

    settings = ReportSettings(ckpt_path="runs/.../best.ckpt", out_dir="report/")
    plan = plan_report(settings)        # loads and checks everything; ReportError names the option
    result = compute_report(plan)       # the numbers (progress bars on stderr)
    record = write_report(result, settings.out_dir)

Defaults are listed in :mod:`report.plan`. The package sits beside ``export/`` rather than in
it: export turns checkpoints into bundles, a report reads either and evaluates the model; it
uses Lightning only through the datamodules.
"""

from report.compute import AccuracyCurve, FigureData, MetricResult, ReportResult, compute_report
from report.output import FILES, report_markdown, report_record, write_report
from report.plan import (
    ATTACK_CHOICES,
    DEFAULT_ATTACKS,
    DEFAULT_METRICS,
    MASK_METRICS,
    SPURIOUS_METRICS,
    ReportError,
    ReportPlan,
    ReportSettings,
    default_methods,
    load_checked_source,
    plan_report,
)
from report.sources import Source, load_source

__all__ = [
    "ATTACK_CHOICES",
    "DEFAULT_ATTACKS",
    "DEFAULT_METRICS",
    "FILES",
    "MASK_METRICS",
    "SPURIOUS_METRICS",
    "AccuracyCurve",
    "FigureData",
    "MetricResult",
    "ReportError",
    "ReportPlan",
    "ReportResult",
    "ReportSettings",
    "Source",
    "compute_report",
    "default_methods",
    "load_checked_source",
    "load_source",
    "plan_report",
    "report_markdown",
    "report_record",
    "write_report",
]
