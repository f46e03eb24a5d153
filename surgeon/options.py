"""Options as data: one declaration per option, read by the validator and the CLI.

An options dataclass declares each field with :func:`option` (its help, its
choices, its least value). :func:`check_fields` validates an instance from
those declarations, :func:`refuse_unknown` refuses misspelt keyword arguments,
and :func:`add_flags` / :func:`flag_values` turn the same fields into
``argparse`` flags and back. So every option the API takes is a flag, with the
API's help, default and choices, and the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from surgeon.errors import InputError

__all__ = ["add_flags", "check_fields", "flag_values", "option", "option_fields", "refuse_unknown"]


def option(
    default: Any,
    help: str,  # noqa: A002 - the argparse name
    *,
    choices: Iterable[Any] | None = None,
    minimum: float | None = None,
    below: float | None = None,
    words: Iterable[str] = (),
    flag: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with what the validator and the CLI need to know.

    ``choices``: the allowed values (of each item, for a tuple). ``minimum`` /
    ``below``: numeric bounds (``minimum <= x < below``). ``words``: strings
    accepted besides a number (``layers="auto"``). ``flag``: the CLI flag's name
    when it differs from ``--field-name``; ``cli=False`` keeps a field out of
    the CLI (a Python object, say)."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "below": below,
        "words": tuple(words),
        "flag": flag,
        "cli": cli,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """``(field, resolved type)`` of every declared option of ``cls``."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if "help" in f.metadata]


def refuse_unknown(cls: type, options: Mapping[str, Any], what: str) -> None:
    """Refuse keyword arguments that are not fields of ``cls``, listing the known."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"unknown option(s) for {what}: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def check_fields(instance: Any) -> None:
    """Validate every declared option of a dataclass instance against its
    type, choices and bounds; the error names the option and what it takes."""
    for field, hint in option_fields(type(instance)):
        _check(field.name, getattr(instance, field.name), hint, field.metadata)


def _check(name: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> None:
    args = _union_args(hint)
    if value is None:
        if type(None) in args:
            return
        raise InputError(f"{name} must be given (it has no 'None')")
    if isinstance(value, str) and value in meta["words"]:
        return
    base = _base_type(hint)
    if base is tuple:
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise InputError(f"{name} must be a tuple of strings, not {value!r}")
        for item in value:
            _check_choice(name, item, meta)
        return
    if base is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name} must be True or False, not {value!r}")
        return
    if base in (int, float):
        numeric = (int,) if base is int else (int, float)
        low, high = meta["minimum"], meta["below"]
        if (
            isinstance(value, bool)
            or not isinstance(value, numeric)
            or (low is not None and value < low)
            or (high is not None and value >= high)
        ):
            also = "".join(f" or {word!r}" for word in meta["words"])
            raise InputError(f"{name} must be {_describe(base, meta)}{also}, not {value!r}")
        return
    if base is str and not isinstance(value, str):
        raise InputError(f"{name} must be a string, not {value!r}")
    _check_choice(name, value, meta)


def _check_choice(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta["choices"] is not None and value not in meta["choices"]:
        raise InputError(f"{name} must be one of {list(meta['choices'])}, not {value!r}")


def _describe(base: type, meta: Mapping[str, Any]) -> str:
    low, high = meta["minimum"], meta["below"]
    noun = "an int" if base is int else "a number"
    if low is not None and high is not None:
        return f"{noun} in [{low}, {high})"
    if low == 0 or (low == 1 and base is int):
        sign = "non-negative" if low == 0 else "positive"
        return f"a {sign} {'int' if base is int else 'number'}"
    if low is not None:
        return f"{noun} >= {low}"
    return noun


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _base_type(hint: Any) -> type:
    """The one non-None type of ``X | None``; ``tuple`` for ``tuple[str, ...]``;
    for ``int | str`` (a count or a word) ``int``."""
    args = [a for a in _union_args(hint) if a is not type(None)]
    for candidate in args:
        origin = typing.get_origin(candidate) or candidate
        if origin in (tuple, bool, int, float):
            return origin
    origin = typing.get_origin(args[0]) or args[0]
    return origin if isinstance(origin, type) else object


# --- the command line --------------------------------------------------------------


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """Add one flag per option of ``cls`` (but ``skip``) and return their dests.
    The flag's default is left unset (``None``) so :func:`flag_values` passes
    only what the user typed: the dataclass keeps the one default."""
    added = []
    shown = dict(defaults or {})
    for field, hint in option_fields(cls):
        meta = field.metadata
        if field.name in skip or not meta["cli"]:
            continue
        name = meta["flag"] or "--" + field.name.replace("_", "-")
        default = shown.get(field.name, field.default)
        text = meta["help"]
        if "default" not in text:
            text += f" (default: {_show(default)})"
        base = _base_type(hint)
        kwargs: dict[str, Any] = {"dest": field.name, "default": None, "help": text}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is tuple:
            kwargs.update(nargs="+", metavar="VALUE")
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
        else:
            nullable = type(None) in _union_args(hint)
            kwargs["type"] = _parse_value(field.name, base, meta, nullable)
            if meta["choices"] is not None:
                kwargs["choices"] = [_NONE if c is None else c for c in meta["choices"]]
        parser.add_argument(name, **kwargs)
        added.append(field.name)
    return added


def flag_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options the user typed, ready for the dataclass (tuples as tuples)."""
    values = {}
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, _NoneWord):
            values[name] = None
        elif value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    return values


def _show(default: Any) -> str:
    if isinstance(default, tuple):
        return " ".join(map(str, default)) or "none"
    return str(default)


class _NoneWord(str):
    """``none`` typed on the command line for an option whose value may be None."""


_NONE = _NoneWord("none")


def _parse_value(name: str, base: type, meta: Mapping[str, Any], nullable: bool):
    words = meta["words"]

    def parse(text: str) -> Any:
        if nullable and text == "none":
            return _NONE
        if text in words or base is str or base is object:
            return text
        try:
            return base(text)
        except ValueError:
            also = f" nor one of {list(words)}" if words else ""
            raise argparse.ArgumentTypeError(
                f"{name}: '{text}' is not {_describe(base, meta)}{also}"
            ) from None

    parse.__name__ = base.__name__
    return parse
