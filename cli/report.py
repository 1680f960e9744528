"""``python train.py report (--ckpt_path <checkpoint> | --bundle <folder>) --out_dir <folder>``.

Writes an analysis report of a trained classifier (see :mod:`report`). The parser is
jsonargparse's, generated from :class:`report.ReportSettings` (its fields are the options, their
types and defaults; its attribute descriptions the ``--help`` text), so every subcommand takes
values in one grammar, ``fit``'s:

    --methods '[saliency, grad_cam]'                 a list (YAML/JSON); --methods+=grad_cam appends
    --eps '[0, 0.05, 0.1]'
    --method_options '{integrated_gradients: {steps: 32}}'   or --method_options.integrated_gradients.steps=32
    --overwrite, --no_progress, --no-verify          switches (also --overwrite=true, --progress=false)
    --config report.yaml                             any of the options as a YAML file
    --print_config                                   print them as such a file (the datamodule in full), then exit

The dataset is by default the datamodule the run recorded (its resolved recipe); change it as in
``fit``:

    --data configs/mnist/pgd_at.yaml                 the data: node of a recipe (or a file holding
                                                     one {class_path, init_args} node)
    --data.init_args.data_dir=~/data                 one argument of the recorded (or given) datamodule
    --data.class_path=datamodules.MNIST --data.init_args.data_dir=~/data    another datamodule

and in a ``--config`` file, ``data:`` holds a ``{class_path, init_args}`` node (or the path of a
file holding one; a recipe is refused there, naming ``--data <recipe>``), or only ``init_args``
to amend the recorded datamodule.

Every option is checked before any work: a missing or damaged file (for a bundle: a file whose
size or SHA-256 differs from its ``bundle.json``; ``--no-verify`` skips that check), an unknown
method or metric, more examples than the test split, a dataset that does not fit the model stop
the command with ``error: --<option>: ...`` and exit status 2, and nothing is written; so does a
list written as separate words (``--methods saliency grad_cam``, the form before lists were
written as in ``fit``), with the form to use. The report folder is written all at once
(:func:`export.staging.staged_folder`): a failed write (a full disk) ends with ``error: ...`` and
exit status 1, and an earlier report in ``out_dir`` is left whole.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import docstring_parser
import yaml
from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser, Namespace

from attributions import attribution_names
from cli.errors import exit_with_error, exit_with_parse_error
from datamodules import ImageDataModule
from metrics import metric_names
from report.compute import compute_report
from report.output import FILES, write_report
from report.plan import ATTACK_CHOICES, ReportError, ReportSettings, load_checked_source, plan_report
from report.sources import Source

PROG = "python train.py report"
#: The names a list option accepts, added to its ``--help`` (the checks live in :mod:`report.plan`);
#: read when the parser is built, so a method or metric registered since is listed.
CHOICES: dict[str, Callable[[], Sequence[str]]] = {
    "methods": attribution_names,
    "metrics": metric_names,
    "attacks": lambda: ATTACK_CHOICES,
}
#: Switches: ``--overwrite`` / ``--no_overwrite`` (``--verify``'s negation keeps its ``--no-verify`` spelling).
NO_PREFIX: dict[str, str] = {"verify": "no-"}


def _switches() -> list[str]:
    return [f.name for f in dataclasses.fields(ReportSettings) if f.type in (bool, "bool")]


def list_options() -> list[str]:
    """The options whose value is a list (``Sequence[...]``, optionally ``| None``)."""
    names = []
    for name, hint in typing.get_type_hints(ReportSettings).items():
        members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if any(typing.get_origin(member) in (Sequence, list, tuple) for member in members):
            names.append(name)
    return names


def build_parser(recorded_data: dict[str, Any] | None = None) -> ArgumentParser:
    """The report's options, from :class:`report.ReportSettings`; ``recorded_data`` is the
    default of ``--data``."""
    parser = ArgumentParser(prog=PROG, description="Write an analysis report of a robustlens classifier.", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of any of these options (as in fit)")
    switches = _switches()
    parser.add_class_arguments(ReportSettings, None, as_group=False, skip={"data", *switches})
    docs = {p.arg_name: p.description for p in docstring_parser.parse(ReportSettings.__doc__ or "").params}
    defaults = {f.name: f.default for f in dataclasses.fields(ReportSettings)}
    for name in switches:
        parser.add_argument(
            f"--{name}", action=ActionYesNo(no_prefix=NO_PREFIX.get(name, "no_")), nargs="?",
            default=defaults[name], help=docs.get(name),
        )  # fmt: skip
    parser.add_subclass_arguments(
        ImageDataModule,
        "data",
        required=False,
        help="the datamodule (default: the one the run recorded); a recipe file, a {class_path, init_args} "
        "node, or --data.class_path / --data.init_args.<name> as in fit",
    )
    if recorded_data is not None:
        parser.set_defaults(data=recorded_data)
    for action in parser._actions:  # the accepted names, from the registries
        if action.dest in CHOICES:
            action.help = f"{action.help} Among: {', '.join(CHOICES[action.dest]())}."
    return parser


def _fail(option: str | None, message: str) -> NoReturn:
    where = f"--{option}: " if option else ""
    exit_with_error(f"{where}{message}", 2, PROG)


def _check_list_grammar(argv: list[str]) -> None:
    """Refuse a list written as separate words (``--methods a b``, ``--eps 0.1``), naming the
    form to use; ``--methods+=a`` (append one) passes to the parser."""
    lists = set(list_options())
    for i, arg in enumerate(argv):
        name, has_value, inline = arg[2:].partition("=")
        if not arg.startswith("--") or name not in lists:
            continue
        words = [inline] if has_value else []
        for word in [] if has_value else argv[i + 1 :]:
            if word.startswith("--") or word == "-h":
                break
            words.append(word)
        if not words:
            continue  # the parser reports the missing value
        if len(words) == 1:
            try:
                if isinstance(yaml.safe_load(words[0]), list | None):
                    continue
            except yaml.YAMLError:
                continue  # malformed YAML: the parser reports it
        given = arg if has_value else " ".join([arg, *words])
        _fail(
            name,
            f"{name} takes one list, written as in fit: --{name} '[{', '.join(words)}]' "
            f"(or --{name}+=<value> to append one), got {given}",
        )


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


def _expand_data_files(argv: list[str]) -> list[str]:
    """``argv`` with recipe files given to ``--data`` replaced by their data node."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--data" and i + 1 < len(argv):
            out += [arg, _data_file(argv[i + 1])]
            i += 2
            continue
        out.append("--data=" + _data_file(arg.split("=", 1)[1]) if arg.startswith("--data=") else arg)
        i += 1
    return out


def _config_content(value: str) -> dict[str, Any]:
    """The options in a ``--config`` value (a YAML file, or YAML written inline)."""
    path = Path(value).expanduser()
    try:
        content = yaml.safe_load(path.read_text() if path.is_file() else value)
    except (OSError, yaml.YAMLError) as error:
        _fail("config", f"config must be a readable YAML file of the report's options, got {value}: {error}")
    if not isinstance(content, dict):
        what = "a file that does not hold a mapping" if path.is_file() else "neither a file nor a mapping"
        _fail("config", f"config must be a YAML file of the report's options (or a mapping written inline), got {value}: {what}")
    return content


class _Given(argparse.Namespace):
    """What the first pass learns: the model's source, and how the data was given."""

    ckpt_path: str | None = None
    bundle: str | None = None
    verify: bool = True
    whole_data: bool = False  # a full datamodule node (the recorded one is not its default)
    any_data: bool = False  # the data was given at all (else the recorded one is used as recorded)


class _ReadConfig(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None) -> None:  # type: ignore[no-untyped-def]
        content = _config_content(value)
        for key in ("ckpt_path", "bundle", "verify"):
            if key in content:
                setattr(namespace, key, content[key])
        if "data" in content:
            namespace.any_data = True
            data = content["data"]
            namespace.whole_data = not isinstance(data, dict) or "class_path" in data
            if isinstance(data, str) and _is_recipe(data, Path(value).expanduser().parent):
                _fail(
                    "data",
                    f"data in a --config file must be a {{class_path, init_args}} node or a file holding one, got the "
                    f"recipe {data} (in {value}); give a recipe on the command line: --data {data}",
                )


def _is_recipe(value: str, base: Path) -> bool:
    """Whether ``value`` names (beside ``base``, where jsonargparse looks first, or as given) a
    YAML file with a ``data:`` node rather than a datamodule node itself."""
    for path in (base / value, Path(value)):
        path = path.expanduser()
        if path.is_file():
            try:
                content = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                return False  # the parser reports an unreadable file
            return isinstance(content, dict) and "class_path" not in content and isinstance(content.get("data"), dict)
    return False


def _first_pass(argv: list[str]) -> _Given:
    """The options read before the full parse, in their order (a later one wins, as in the full
    parse): the model's source, from the command line and ``--config`` files."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--ckpt_path")
    pre.add_argument("--bundle")
    pre.add_argument("--verify", dest="verify", nargs="?", const=True, type=lambda v: str(v).lower() in ("true", "yes"))
    pre.add_argument("--no-verify", dest="verify", action="store_false")
    pre.add_argument("--config", action=_ReadConfig)
    try:
        given, _ = pre.parse_known_args(argv, namespace=_Given())
    except argparse.ArgumentError:  # --ckpt_path without its value, ...: the full parse reports it
        given = _Given()
    given.whole_data = given.whole_data or any(a == "--data" or a.startswith("--data=") for a in argv)
    given.any_data = given.any_data or any(a.startswith("--data") for a in argv)
    return given


def _settings(config: Namespace, data: dict[str, Any] | None) -> ReportSettings:
    names = [f for f in ReportSettings.__dataclass_fields__ if f != "data"]  # type: ignore[attr-defined]
    return ReportSettings(**{name: config[name] for name in names}, data=data)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` (default ``sys.argv[2:]``), write the report, print a summary; returns
    the contents of ``report.json``. Bad input exits with status 2 before any work.

    The model is loaded first (from ``--ckpt_path`` / ``--bundle``, on the command line or in a
    ``--config`` file) so that ``--data`` can default to, and ``--data.init_args.*`` amend, the
    datamodule its run recorded.
    """
    argv = list(sys.argv[2:] if argv is None else argv)
    helping = any(a in ("-h", "--help") or a.endswith(".help") for a in argv)
    if not helping:
        _check_list_grammar(argv)
    argv = _expand_data_files(argv)
    given = _first_pass(argv)
    source: Source | None = None
    if not helping and (given.ckpt_path is not None or given.bundle is not None):
        try:
            source = load_checked_source(given.ckpt_path, given.bundle, given.verify)
        except ReportError as error:
            _fail(error.option, str(error))
    recorded = None if given.whole_data or source is None else source.data_config
    parser = build_parser(recorded)
    try:
        config = parser.parse_args(argv)
    except argparse.ArgumentError as error:
        exit_with_parse_error(str(error), PROG)
    data = config.data.as_dict() if given.any_data and config.data is not None else None
    settings = _settings(config, data)
    if (given.ckpt_path, given.bundle, given.verify) != (settings.ckpt_path, settings.bundle, settings.verify):
        source = None  # the full parse disagrees with the first pass: plan_report loads what it says
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
