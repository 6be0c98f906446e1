"""The peer-comparison machinery (``python -m diffsens.bench``) on tiny cases:
errors against the right reference, failures reported, the table printed."""
import io

import numpy as np
import pytest

from diffsens.bench import Case, print_table, run_case


def _case(**extra):
    reference = np.array([1.0, 2.0])
    return Case("tiny", lambda: reference * (1 + 1e-3), lambda: reference * 2.0,
                "peer", reference, **extra)


def test_errors_against_the_reference():
    row = run_case(_case(), repeats=1, min_time=0.001)
    assert np.isclose(row["ours_err"], 1e-3 * 2.0 / 2.0)
    assert np.isclose(row["peer_err"], 1.0)
    assert row["ratio"] > 0 and "note" not in row


def test_peer_reference_for_a_cost_baseline():
    row = run_case(_case(peer_reference=np.array([2.0, 4.0])), repeats=1, min_time=0.001)
    assert row["peer_err"] == 0.0
    assert np.isclose(row["ours_err"], 1e-3)


def test_failing_contender_is_reported_not_raised():
    def broken():
        raise RuntimeError("no luck")

    case = Case("tiny", lambda: np.ones(2), broken, "peer", np.ones(2))
    row = run_case(case, repeats=1, min_time=0.001)
    assert np.isnan(row["ratio"]) and np.isnan(row["peer_err"])
    assert "no luck" in row["note"]
    out = io.StringIO()
    print_table([row], file=out)
    assert "peer failed: RuntimeError: no luck" in out.getvalue()


def test_ratios_below_ten_keep_two_decimals():
    out = io.StringIO()
    row = dict(label="cost", peer="plain", ours_s=2.5e-4, peer_s=1e-4, ratio=0.4,
               ours_err=0.0, peer_err=0.0)
    print_table([row, dict(row, ratio=123.4)], file=out)
    text = out.getvalue()
    assert "0.40x" in text and "123.4x" in text


def test_hand_written_pollu_is_the_problem_it_measures_against():
    """The tape-cost benchmark's yardstick: the hand-written C POLLU equals
    the problem's NumPy right-hand side, called or bound."""
    from diffsens import problems
    from diffsens._bench_native import compiled_pollu
    hand = compiled_pollu()
    if hand is None:
        pytest.skip("no C compiler for the hand-written reference")
    pollu = problems.get("pollu")
    Y = np.random.default_rng(3).random((5, pollu.n))
    expected = np.array([pollu.fun(0.0, y, pollu.p) for y in Y])
    np.testing.assert_allclose(hand(Y, pollu.p), expected, rtol=1e-14, atol=1e-14 * np.abs(expected).max())
    bound = hand.bound(Y, pollu.p)
    np.testing.assert_array_equal(bound(), hand(Y, pollu.p))
    with pytest.raises(ValueError, match="shape"):
        hand.bound(Y[:, :-1], pollu.p)
