"""The closed-form reference for y' = A y: outputs and exact VJPs."""
import numpy as np
import scipy.linalg


def expm_reference(A, dA, t, W, y0):
    """Y (n, nt) with Y[:, i] = expm(A t_i) y0, and the exact VJPs
    sum_i W[:, i]^T dy(t_i)/dp_j (dA[j] = dA/dp_j, by expm_frechet) and
    sum_i W[:, i]^T dy(t_i)/dy0."""
    Y, gp, g0 = [], np.zeros(len(dA)), np.zeros(len(y0))
    for i, ti in enumerate(t):
        for j, dAj in enumerate(dA):
            E, L = scipy.linalg.expm_frechet(A * ti, dAj * ti)
            gp[j] += W[:, i] @ (L @ y0)
        Y.append(E @ y0)
        g0 += E.T @ W[:, i]
    return np.stack(Y, axis=1), gp, g0


def van_loan_gram(A, Q, T):
    """int_0^T expm(A^T t) Q expm(A t) dt, from one block exponential
    expm([[-A^T, Q], [0, A]] T) (Van Loan 1978); works on complex A."""
    n = A.shape[0]
    F = scipy.linalg.expm(np.block([[-A.T, Q], [np.zeros((n, n)), A]]) * T)
    return F[n:, n:].T @ F[:n, n:]
