"""How every subcommand reports a refused option: ``error: field: reason``, then a tip.

jsonargparse reports a bad value deep inside nested ``class_path`` configs as an indented tree
of "Parser key" blocks, and a constructor that refuses its arguments as a chained exception;
:func:`summarise_parse_error` and :func:`failing_field` turn both into the dotted field that is
wrong and the reason. :class:`RobustLensParser` is the parser of ``fit``/``validate``/``test``;
``report``'s parser (also jsonargparse's) reports through the same :func:`exit_with_parse_error`; every
subcommand writes the errors it finds itself through :func:`exit_with_error` (``export``'s option
errors are argparse's own).
"""

from __future__ import annotations

import re
import sys
import traceback
from typing import Any, NoReturn

from pytorch_lightning.cli import LightningArgumentParser


def exit_with_error(message: str, status: int, prog: str | None = None, cause: BaseException | None = None) -> NoReturn:
    """Write ``error: <message>`` (and, given the command ``prog``, a tip to run its ``--help``)
    to stderr and exit with ``status`` (2: bad input, nothing done; 1: the work failed)."""
    sys.stderr.write(f"error: {message}\n")
    if prog is not None:
        sys.stderr.write(f"tip: run `{prog} --help` for the accepted options\n")
    raise SystemExit(status) from cause


def config_nodes(config: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every ``{class_path, init_args}`` node of a dumped config, with its dotted path."""
    nodes: list[tuple[str, dict[str, Any]]] = []
    if isinstance(config, dict):
        if "class_path" in config:
            nodes.append((path, config))
        for key, value in config.items():
            child = key if not path else f"{path}.{key}"
            nodes.extend(config_nodes(value, child))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            nodes.extend(config_nodes(value, f"{path}[{i}]"))
    return nodes


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (jsonargparse wraps constructor errors in its own)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def failing_field(error: BaseException, config: dict[str, Any], model_class: type) -> str | None:
    """The config path of the argument a constructor rejected, found from the traceback.

    The innermost ``__init__`` in the traceback tells which class refused its arguments and
    with which values; the message starts with the argument's name (every robustlens
    constructor words it so). Among the config nodes of that class, the one holding the same
    value for that argument is the culprit. ``model_class`` is the command's model (its
    arguments live under ``model.``).
    """
    init_frame = None
    classifier_frames = []
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
            init_frame = frame
            if isinstance(frame.f_locals["self"], model_class):
                classifier_frames.append(frame)
    if init_frame is None:
        return None
    cls_name = type(init_frame.f_locals["self"]).__name__
    argument = str(error).split(" ", 1)[0].strip(":,")
    value = init_frame.f_locals.get(argument, object())
    candidates = [
        (path, node)
        for path, node in config_nodes(config)
        if str(node["class_path"]).rsplit(".", 1)[-1] == cls_name
    ]
    for path, node in candidates:
        init_args = node.get("init_args") or {}
        if argument in init_args and init_args[argument] == value:
            return f"{path}.init_args.{argument}"
    for path, node in candidates:  # the argument named elsewhere in the message ("`mode` can be min, max")
        named = [k for k in node.get("init_args") or {} if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", str(error))]
        if len(named) == 1 and init_frame.f_locals.get(named[0], object()) == node["init_args"][named[0]]:
            return f"{path}.init_args.{named[0]}"
    if candidates:
        return candidates[-1][0]
    if cls_name == model_class.__name__:
        return f"model.{argument}"
    for frame in classifier_frames:  # a named backbone refused one of ``model.backbone_kwargs``
        if argument in (frame.f_locals.get("backbone_kwargs") or {}):
            return f"model.backbone_kwargs.{argument}"
        return "model.backbone"
    return None


_PARSER_KEY = re.compile(r'^(\s*)(?:- )?Parser key "([^"]+)":\s*(.*)$')
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value",
    "- Problem with given class_path",
    "- Expected a <class 'NoneType'>",
)


def summarise_parse_error(message: str) -> list[str]:
    """``field: reason`` lines from jsonargparse's nested error text.

    jsonargparse reports a bad value deep inside nested ``class_path`` configs as an indented
    tree of "Parser key" blocks; this joins the keys of each branch into one dotted field name
    and keeps the reason at its leaf, e.g. ``model.objective.attack.norm: Expected a
    typing.Literal['linf', 'l2']. Got value: l3``.
    """
    stack: list[tuple[int, str]] = []
    summary: list[str] = []
    for line in message.splitlines():
        match = _PARSER_KEY.match(line)
        indent = len(line) - len(line.lstrip())
        if match:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            if match.group(3):
                summary.append(f"{'.'.join(k for _, k in stack)}: {match.group(3)}")
            continue
        text = line.strip()
        if not text or not stack or text.startswith(_NOISE):
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            summary.append(f"{'.'.join(k for _, k in stack)}: {text.lstrip('- ')}")
    return list(dict.fromkeys(summary))


class RobustLensParser(LightningArgumentParser):
    """Argument parser whose errors start with ``field: reason`` and skip the long usage text."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:  # type: ignore[override]
        if not self.exit_on_error:  # a nested parser: the outermost one reports
            super().error(message, ex)
        exit_with_parse_error(message, self.prog.replace(" [options]", ""))


def exit_with_parse_error(message: str, prog: str) -> NoReturn:
    """Report a jsonargparse parse error of the command ``prog`` as ``field: reason`` lines
    (followed by jsonargparse's own text) and exit with status 2; every subcommand's parser
    errors go through here."""
    summary = summarise_parse_error(message)
    if summary:
        message = "\n  ".join(["invalid configuration:", *summary]) + "\n\ndetails:\n" + message
    exit_with_error(message, 2, prog)
