"""The package docstring (what ``help(surgeon)`` shows first) lists every stage's
public function with an example; the examples run here, as written."""

import doctest

import surgeon

STAGES = ("analyze", "prune", "make_plan", "apply", "verify", "save", "load", "prune_checkpoint")


def test_help_lists_every_pipeline_function_with_an_example():
    text = surgeon.__doc__
    for name in STAGES:
        assert f"``{name}(" in text, f"{name} is not listed in surgeon's docstring"
        assert f"surgeon.{name}(" in text, f"{name} has no example in surgeon's docstring"
        assert name in surgeon.__all__


def test_the_examples_run_as_written():
    result = doctest.testmod(surgeon, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 15
    assert result.failed == 0
