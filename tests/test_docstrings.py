"""The examples in the public docstrings run and print what they claim."""
import doctest
import importlib

import pytest

MODULES = ["diffsens._ivp", "diffsens._rhs", "diffsens._sens", "diffsens._result",
           "diffsens._sundials", "diffsens._dual"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
