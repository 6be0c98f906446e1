"""``python -m diffsens.workprecision``: the stiff work-precision table."""
import sys

import numpy as np
import pytest

from diffsens import problems, workprecision


def test_significant_digits_is_the_mixed_error():
    y_ref = np.array([0.0, 1.0, 1e6])
    # mixed error max |dy| / (1 + |y_ref|): 1e-8 / 1, 2e-8 / 2, 1e-2 / (1 + 1e6)
    y = y_ref + np.array([1e-8, 2e-8, 1e-2])
    assert workprecision.significant_digits(y, y_ref) == pytest.approx(8.0)
    assert workprecision.significant_digits(y_ref, y_ref) == pytest.approx(300.0)


def test_one_problem_at_one_tolerance():
    rows = workprecision.work_precision(("hires",), (1e-6,))
    solvers = {row[1] for row in rows}
    assert {"diffsens Rodas5P", "diffsens Rodas4", "diffsens Rosenbrock23",
            "scipy BDF", "scipy Radau", "scipy LSODA"} <= solvers
    for name, solver, tol, digits, seconds in rows:
        assert name == "hires" and tol == 1e-6 and seconds > 0
        assert np.isfinite(digits), solver
    rodas = {row[1]: row[3] for row in rows}["diffsens Rodas5P"]
    assert rodas > 4   # rtol = atol = 1e-6 on HIRES: about 5-6 digits


def test_plot_without_matplotlib_fails_before_solving(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import -> ImportError
    monkeypatch.setattr(workprecision, "work_precision",
                        lambda *a: pytest.fail("solved before checking for matplotlib"))
    with pytest.raises(SystemExit):
        workprecision.main(["--problems", "hires", "--plot", "figure.png"])
    assert "matplotlib" in capsys.readouterr().err


def test_unknown_problem_is_refused(capsys):
    with pytest.raises(SystemExit):
        workprecision.main(["--problems", "lorenz"])
    assert "lorenz" in capsys.readouterr().err


def test_main_prints_the_table(capsys):
    rows = workprecision.main(["--problems", "rober", "--tolerances", "1e-6"])
    out = capsys.readouterr().out
    assert "diffsens Rodas5P" in out and "rober" in out
    assert len(rows) >= 6
    assert problems.get("rober").t_span[1] == 1e11
