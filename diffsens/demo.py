"""The main job: solve the built-in problems with every native method, say
what was done and how fast it was against scipy.  Run ``python -m diffsens``."""
import sys

from . import __version__
from .bench import default_cases, print_table, run_case


def main(argv=None):
    print(f"diffsens {__version__}: scipy.integrate.solve_ivp's interface, "
          "integration loops in C.")
    print("In this process, timing the two sides in alternating rounds: Lotka-Volterra (2 states, "
          "101 outputs) and the Pleiades 7-body problem (28 states) with every "
          "native explicit method against scipy's nearest one; a traced "
          "right-hand side against scipy and diffrax (if installed); dy/dp by "
          "dual numbers against finite differences and diffrax's jacfwd; the "
          "stiff Robertson problem with Rodas5P against scipy's BDF and CVODE "
          "(scikit-sundae).\n")
    rows = [run_case(case, repeats=3, min_time=0.05) for case in default_cases()]
    print_table(rows)
    print("\nratio = peer time / diffsens time; err = max relative error against "
          "a reference solution.\nFull comparison: python -m diffsens.bench")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
