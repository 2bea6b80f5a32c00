"""The third-party warnings the CLI silences have one list (`wantrain/commands/quiet.py`), which the tests use too."""

from __future__ import annotations

import warnings

from wantrain.commands.quiet import WARNINGS, pytest_filters


def test_pytest_ignores_the_warnings_the_cli_silences(pytestconfig):
    assert len(pytest_filters()) == len(WARNINGS)
    assert set(pytest_filters()) <= set(pytestconfig.getini("filterwarnings"))


def test_a_listed_warning_is_ignored_in_tests_and_another_one_from_the_same_module_is_not():
    module = "pytorch_lightning.loops.fit_loop"
    with warnings.catch_warnings(record=True) as seen:  # the filters in force: pyproject's plus quiet.py's
        warnings.warn_explicit("Found 3 module(s) in eval mode at the start of training", UserWarning, "x.py", 1,
                               module=module)
        warnings.warn_explicit("something new", UserWarning, "x.py", 1, module=module)
    assert [str(w.message) for w in seen] == ["something new"]
