"""One source of options: every field of the options dataclasses is a flag of
the command that runs that stage, with the dataclass' help, choices and default,
and a typed flag reaches the dataclass as the API would take it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from surgeon.calibrate.options import CalibrationOptions
from surgeon.checkpoint.stream_plan import StreamOptions
from surgeon.cli import _parser
from surgeon.options import flag_values, option_fields
from surgeon.plan.options import TARGETS, PlanOptions
from surgeon.rewriters.options import CutOptions

COMMANDS = {
    "prune": (CalibrationOptions, PlanOptions, CutOptions),
    "prune-checkpoint": (StreamOptions, PlanOptions),
}


def subcommand(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def flags(name: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in subcommand(name)._actions if a.option_strings}


def stage_fields(name: str):
    for cls in COMMANDS[name]:
        for field in dataclasses.fields(cls):
            yield cls, field


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_field_is_a_flag_of_its_command(command):
    actions = flags(command)
    missing = [
        f"{cls.__name__}.{field.name}"
        for cls, field in stage_fields(command)
        if field.metadata.get("cli", True) and field.name not in actions
    ]
    assert not missing, f"options without a flag on `surgeon {command}`: {missing}"
    undeclared = [
        f"{cls.__name__}.{field.name}"
        for cls, field in stage_fields(command)
        if "help" not in field.metadata  # declared without surgeon.options.option
    ]
    assert not undeclared, f"option fields not declared with option(): {undeclared}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flags_carry_the_dataclass_help_choices_and_no_second_default(command):
    actions = flags(command)
    for cls in COMMANDS[command]:
        for field, _ in option_fields(cls):
            if not field.metadata["cli"]:
                continue
            action = actions[field.name]
            assert action.help.startswith(field.metadata["help"]), field.name
            assert action.default is None, f"{field.name}: the dataclass keeps the one default"
            choices = field.metadata["choices"]
            if choices is not None:
                shown = {"none" if c is None else c for c in choices}
                assert set(action.choices) == shown, field.name


def typed(field: dataclasses.Field) -> tuple[list[str], object]:
    """Command-line words for a value other than the default, and that value."""
    meta, default = field.metadata, field.default
    if meta["choices"] is not None:
        other = next(c for c in meta["choices"] if c not in (default, None))
        if isinstance(default, tuple):
            return [str(other)], (other,)
        return [str(other)], other
    if isinstance(default, bool):
        return [], not default
    if isinstance(default, tuple):
        return ["model.layers.0.mlp", "lm_head"], ("model.layers.0.mlp", "lm_head")
    if field.name in ("ratio", "flops_ratio"):
        return ["0.25"], 0.25
    if field.name == "layers":
        return ["2"], 2
    if field.name == "device":
        return ["cpu"], "cpu"
    low = meta["minimum"] or 0
    return [str(int(low) + 3)], int(low) + 3


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_typed_flag_reaches_its_dataclass(command):
    parser = subcommand(command)
    actions = flags(command)
    for cls in COMMANDS[command]:
        for field, _ in option_fields(cls):
            if not field.metadata["cli"]:
                continue
            words, value = typed(field)
            strings = actions[field.name].option_strings
            flag = (
                next(f for f in strings if f.startswith("--no-")) if value is False else strings[0]
            )
            args = parser.parse_args(["model", "-o", "out", flag, *words])
            got = flag_values(args, [field.name])
            assert got == {field.name: value}, (field.name, got)
            needs_target = cls is PlanOptions and field.name not in TARGETS
            options = cls(**({"ratio": 0.2} if needs_target else {}), **got)
            assert getattr(options, field.name) == value


def test_flags_not_typed_leave_their_default_to_the_dataclass():
    args = subcommand("prune").parse_args(["model", "-o", "out", "--ratio", "0.2"])
    names = [f.name for cls in COMMANDS["prune"] for f in dataclasses.fields(cls)]
    assert flag_values(args, names) == {"ratio": 0.2}
