"""One Rosenbrock step in its generic (coefficient by coefficient) form: the
reference the C stepper and the tableau tests are checked against."""
import numpy as np


def generic_step(tab, f, jac, dfdt, t, y, h, M=None, gammas=None,
                 mass_on_c=True):
    """One step of Hairer & Wanner's transformed form (rosenbrock.h):

    ``(M/(gamma h) - J) U_i = f(t + alpha_i h, y + sum_j a_ij U_j)
    + M sum_j (c_ij / h) U_j + gammas_i h f_t``.  ``gammas`` and
    ``mass_on_c=False`` substitute wrong conventions (negative controls).

    Returns
    -------
    y_new, err : ndarray
    U : ndarray, shape (s, n)
    """
    n = y.shape[0]
    s = tab.n_stages
    M = np.eye(n) if M is None else M
    gammas = tab.gammas if gammas is None else gammas
    W = M / (tab.gamma * h) - jac(t, y)
    ft = dfdt(t, y)
    U = np.zeros((s, n))
    for i in range(s):
        Y = y + tab.a[i, :i] @ U[:i]
        cu = tab.c[i, :i] @ U[:i] / h
        rhs = f(t + tab.alpha[i] * h, Y) + (M @ cu if mass_on_c else cu) \
            + gammas[i] * h * ft
        U[i] = np.linalg.solve(W, rhs)
    return y + tab.m @ U, tab.e @ U, U
