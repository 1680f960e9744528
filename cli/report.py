"""``python train.py report (--ckpt_path <checkpoint> | --bundle <folder>) --out_dir <folder>``.

Writes an analysis report of a trained classifier (see :mod:`report`). The dataset is by
default the datamodule the run recorded (its resolved recipe); change it as in ``fit``:

    --data configs/mnist/pgd_at.yaml                 the data: node of a recipe (or a file holding
                                                     one {class_path, init_args} node)
    --data.init_args.data_dir=~/data                 one argument of the recorded (or given) datamodule
    --data.class_path=datamodules.MNIST --data.init_args.data_dir=~/data    another datamodule

Lists take several values: ``--methods saliency grad_cam --metrics deletion_auc
randomisation --eps 0 0.05 0.1``; options of methods and metrics are mappings:
``--method_options '{integrated_gradients: {steps: 32}}'`` or
``--method_options.integrated_gradients.steps=32``.

Every option is checked before any work: a missing or damaged file (for a bundle: a file whose
size or SHA-256 differs from its ``bundle.json``; ``--no-verify`` skips that check), an unknown
method or metric, more examples than the test split, a dataset that does not fit the model stop
the command with ``error: --<option>: ...`` and exit status 2, and nothing is written. The report
folder is written all at once (:func:`export.staging.staged_folder`): a failed write (a full disk)
ends with ``error: ...`` and exit status 1, and an earlier report in ``out_dir`` is left whole.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml
from jsonargparse import ActionYesNo, ArgumentParser, Namespace

from attributions import ATTRIBUTION_NAMES
from cli.errors import exit_with_error, summarise_parse_error
from datamodules import ImageDataModule
from metrics import METRIC_NAMES
from report.compute import compute_report
from report.output import FILES, write_report
from report.plan import (
    ATTACK_CHOICES,
    DEFAULT_ATTACKS,
    DEFAULT_METHODS,
    ReportError,
    ReportSettings,
    load_checked_source,
    plan_report,
)
from report.sources import Source

PROG = "python train.py report"


def build_parser(recorded_data: dict[str, Any] | None = None) -> ArgumentParser:
    """The report's options; ``recorded_data`` is the default of ``--data``."""
    parser = ArgumentParser(prog=PROG, description="Write an analysis report of a robustlens classifier.", exit_on_error=False)
    parser.add_argument("--ckpt_path", type=str | None, default=None, help="a Lightning checkpoint of RobustClassifier")
    parser.add_argument("--bundle", type=str | None, default=None, help="an export bundle folder (instead of --ckpt_path)")
    parser.add_argument("--out_dir", type=str, required=True, help="the report folder to create")
    parser.add_argument("--overwrite", action=ActionYesNo, default=False, help="replace out_dir if it holds files")
    parser.add_subclass_arguments(
        ImageDataModule,
        "data",
        required=False,
        help="the datamodule (default: the one the run recorded); a recipe file, a {class_path, init_args} "
        "node, or --data.class_path / --data.init_args.<name> as in fit",
    )
    if recorded_data is not None:
        parser.set_defaults(data=recorded_data)
    parser.add_argument(
        "--num_examples", type=int | None, default=None, help="test examples the metrics score (default: 100, or the test split if smaller)"
    )
    parser.add_argument("--batch_size", type=int, default=64, help="examples per batch")
    parser.add_argument(
        "--methods", nargs="+", type=str, default=list(DEFAULT_METHODS),
        help=f"attribution methods, among {', '.join(ATTRIBUTION_NAMES)}",
    )  # fmt: skip
    parser.add_argument(
        "--method_options", type=dict[str, dict[str, Any]], default={}, help="{method: {option: value}}"
    )
    parser.add_argument(
        "--metrics", nargs="+", type=str, default=None,
        help="explanation metrics (default: robustness, sensitivity, faithfulness and randomisation metrics, plus "
        f"localisation ones when the data has masks), among {', '.join(METRIC_NAMES)}",
    )  # fmt: skip
    parser.add_argument(
        "--metric_options", type=dict[str, dict[str, Any]], default={}, help="{metric: {option: value}}"
    )
    parser.add_argument(
        "--target", type=Literal["predicted", "label"], default="predicted", help="the class explained"
    )
    parser.add_argument(
        "--eps", nargs="+", type=float, default=None,
        help="ε grid of the accuracy curve; 0 is always added (default: the recipe's evaluation ε times 0, ¼, ½, 1, 1½, 2)",
    )  # fmt: skip
    parser.add_argument(
        "--norm", type=Literal["linf", "l2"] | None, default=None, help="threat model (default: the recipe's, else linf)"
    )
    parser.add_argument(
        "--attacks", nargs="+", type=str, default=None,
        help=f"attacks of the accuracy curve, among {', '.join(ATTACK_CHOICES)} (default: {' '.join(DEFAULT_ATTACKS)}; "
        "autoattack is the standard version, whose Square Attack takes minutes on a CPU)",
    )  # fmt: skip
    parser.add_argument("--attack_steps", type=int, default=20, help="steps of each PGD of the accuracy curve (step 2.5 ε / steps)")
    parser.add_argument("--attack_restarts", type=int, default=1, help="restarts of each PGD (worst case kept)")
    parser.add_argument(
        "--accuracy_examples", type=int | None, default=None,
        help="test examples of the accuracy curve (default: 1000, or the test split if smaller)",
    )  # fmt: skip
    parser.add_argument("--figure_examples", type=int, default=8, help="examples in the attribution figure")
    parser.add_argument("--seed", type=int, default=0, help="seed of the examples, attacks and every random draw")
    parser.add_argument("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda, cuda:<index>")
    parser.add_argument("--progress", action=ActionYesNo, default=True, help="show progress bars")
    parser.add_argument(
        "--verify", action=ActionYesNo(no_prefix="no-"), default=True,
        help="check a bundle's files against the sizes and SHA-256 digests in its bundle.json before loading it; "
        "--no-verify for a bundle changed on purpose",
    )  # fmt: skip
    return parser


def _fail(option: str | None, message: str) -> NoReturn:
    where = f"--{option}: " if option else ""
    exit_with_error(f"{where}{message}", 2, PROG)


def _data_file(value: str) -> str:
    """A ``--data`` value naming a YAML file, as the JSON of its datamodule node."""
    path = Path(value).expanduser()
    if not path.is_file():
        return value  # a class name, or a node written inline: jsonargparse reads those
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        _fail("data", f"data must be a readable YAML file, got {value}: {error}")
    if isinstance(content, dict) and isinstance(content.get("data"), dict):
        content = content["data"]
    if not isinstance(content, dict) or "class_path" not in content:
        _fail("data", f"data must be a recipe with a data: node or a {{class_path, init_args}} node, got {value}")
    return json.dumps(content)


def _expand_data_files(argv: list[str]) -> tuple[list[str], bool, bool]:
    """``argv`` with recipe files given to ``--data`` replaced by their data node; also whether
    ``--data <value>`` was given and whether any ``--data...`` option was."""
    out: list[str] = []
    whole = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--data" and i + 1 < len(argv):
            out += [arg, _data_file(argv[i + 1])]
            whole = True
            i += 2
            continue
        if arg.startswith("--data="):
            out.append("--data=" + _data_file(arg.split("=", 1)[1]))
            whole = True
        else:
            out.append(arg)
        i += 1
    return out, whole, any(a.startswith("--data") for a in argv)


def _source(argv: list[str]) -> Source | None:
    """The model named by ``--ckpt_path`` / ``--bundle``, loaded before the full parse so that
    ``--data`` can default to (and ``--data.init_args.*`` amend) the datamodule it recorded."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--ckpt_path")
    pre.add_argument("--bundle")
    pre.add_argument("--verify", dest="verify", action="store_true", default=True)
    pre.add_argument("--no-verify", dest="verify", action="store_false")
    known, _ = pre.parse_known_args(argv)
    if known.ckpt_path is None and known.bundle is None:
        return None
    return load_checked_source(known.ckpt_path, known.bundle, known.verify)


def _settings(config: Namespace, data: dict[str, Any] | None) -> ReportSettings:
    names = [f for f in ReportSettings.__dataclass_fields__ if f != "data"]  # type: ignore[attr-defined]
    return ReportSettings(**{name: config[name] for name in names}, data=data)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` (default ``sys.argv[2:]``), write the report, print a summary; returns
    the contents of ``report.json``. Bad input exits with status 2 before any work."""
    argv = list(sys.argv[2:] if argv is None else argv)
    argv, whole_data, any_data = _expand_data_files(argv)
    source = None
    if not any(a in ("-h", "--help") or a.endswith(".help") for a in argv):
        try:
            source = _source(argv)
        except ReportError as error:
            _fail(error.option, str(error))
    recorded = None if whole_data or source is None else source.data_config
    parser = build_parser(recorded)
    try:
        config = parser.parse_args(argv)
    except argparse.ArgumentError as error:
        summary = summarise_parse_error(str(error))
        _fail(None, "invalid option: " + ("\n  ".join(summary) if summary else str(error)))
    data = config.data.as_dict() if any_data and config.data is not None else None
    settings = _settings(config, data)
    try:
        plan = plan_report(settings, source)
    except ReportError as error:
        _fail(error.option, str(error))
    result = compute_report(plan)
    try:
        record = write_report(result, settings.out_dir)
    except OSError as error:  # export.staging.AtomicWriteError: out_dir is unchanged
        exit_with_error(str(error), 1, cause=error)
    curve = record["accuracy"]
    lines = [
        f"robustlens: report of {record['source']['kind']} {record['source']['path']}",
        f"  out_dir: {settings.out_dir} ({', '.join(FILES.values())}; {record['seconds']['total']:.1f} s)",
        f"  clean accuracy {curve['clean']:.4f}; worst case over {', '.join(curve['by_attack'])}: "
        + ", ".join(f"{a:.3f} at ε={e:.4g}" for e, a in zip(curve["eps"][1:], curve["accuracy"][1:])),
        *[f"  warning: cross-entropy PGD overstates robustness {w}" for w in curve["warnings"]],
        f"  explanation metrics: {len(record['metrics'])} methods × {len(record['settings']['metrics'])} metrics "
        f"on {record['settings']['examples']} test examples",
    ]
    print("\n".join(lines), flush=True)
    return record
