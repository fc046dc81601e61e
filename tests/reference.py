"""Independent NumPy float64 implementations to test the JAX kernels against.

Written from the formulas (DESIGN §3), sharing no code with jaxrecon.
"""

import numpy as np

# One tolerance table per dtype instead of scattered literals.
TOL = {
    np.float64: {"exact": 1e-10, "solve": 1e-8},
    np.float32: {"exact": 1e-4, "solve": 1e-3},
}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ridge_solve(p, y, l2, w=None):
    """Normal equations (PᵀWP + λI)θ = PᵀWy."""
    w = np.ones(len(p)) if w is None else w
    h = p.T @ (w[:, None] * p) + l2 * np.eye(p.shape[1])
    rhs = p.T @ (w[:, None] * y if y.ndim == 2 else w * y)
    return np.linalg.solve(h, rhs)


def sherman_morrison(theta, h_inv, p_j, r_j):
    """θ⁻ = θ⁺ + H⁻¹p r / (1 − pᵀH⁻¹p)."""
    u = h_inv @ p_j
    return theta + u * r_j / (1 - p_j @ u)


def logistic_objective(theta, p, y, l2, w):
    z = p @ theta
    return np.sum(w * (np.logaddexp(0, z) - y * z)) + 0.5 * l2 * theta @ theta


def logistic_grad(theta, p, y, l2, w):
    return p.T @ (w * (sigmoid(p @ theta) - y)) + l2 * theta


def logistic_hessian(theta, p, l2, w):
    s = sigmoid(p @ theta)
    return p.T @ ((w * s * (1 - s))[:, None] * p) + l2 * np.eye(p.shape[1])


def softmax_grad(theta, p, y, l2, w):
    s = softmax(p @ theta)
    s[np.arange(len(y)), y] -= 1
    return p.T @ (w[:, None] * s) + l2 * theta


def softmax_hessian(theta, p, l2, w):
    """Dense Hessian over vec(Θ) in row-major order (index d*K + k)."""
    n, d = p.shape
    k = theta.shape[1]
    s = softmax(p @ theta)
    h = np.zeros((d * k, d * k))
    for i in range(n):
        a = np.diag(s[i]) - np.outer(s[i], s[i])
        h += w[i] * np.kron(np.outer(p[i], p[i]), a)
    return h + l2 * np.eye(d * k)


def newton(grad, hess, theta0, steps=50, tol=1e-13):
    """Plain Newton iterations (for strictly convex smooth objectives)."""
    theta = theta0.copy()
    for _ in range(steps):
        g = grad(theta)
        if np.linalg.norm(g) < tol:
            break
        theta = theta - np.linalg.solve(hess(theta), g.reshape(-1)).reshape(theta.shape)
    return theta


def rbf_kernel(x, z, bandwidth):
    """Gaussian kernel k(x, z) = exp(−‖x − z‖² / (2σ²)) for rows of x [a, d] and z [b, d]."""
    d2 = ((x[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * bandwidth**2))


def median_pairwise_distance(x):
    """Median of ‖x_i − x_j‖ over pairs i < j."""
    i, j = np.triu_indices(len(x), k=1)
    return np.median(np.linalg.norm(x[i] - x[j], axis=1))


def squared_hinge_signs(y, k=None):
    """s = 2y − 1 (binary, y in {0, 1}) or s_ik = +1 if k == y_i else −1 (one-vs-rest)."""
    if k is None:
        return 2.0 * y - 1
    return 2.0 * np.eye(k)[y] - 1


def squared_hinge_objective(theta, p, y, l2, w):
    s = squared_hinge_signs(y, None if theta.ndim == 1 else theta.shape[1])
    h = np.maximum(0, 1 - s * (p @ theta))
    per = h**2 if theta.ndim == 1 else (h**2).sum(1)
    return np.sum(w * per) + 0.5 * l2 * np.sum(theta * theta)


def squared_hinge_grad(theta, p, y, l2, w):
    """∇ = Pᵀ(w ⊙ −2 s max(0, 1 − s z)) + λθ."""
    s = squared_hinge_signs(y, None if theta.ndim == 1 else theta.shape[1])
    dz = -2 * s * np.maximum(0, 1 - s * (p @ theta))
    ww = w if theta.ndim == 1 else w[:, None]
    return p.T @ (ww * dz) + l2 * theta


def squared_hinge_hessian(theta, p, y, l2, w):
    """Generalised Hessian over vec(Θ) (row-major d*K + k): Σ w_i 2[s z < 1] (p pᵀ) ⊗ e_k e_kᵀ."""
    if theta.ndim == 1:
        s = squared_hinge_signs(y)
        act = 2.0 * (s * (p @ theta) < 1)
        return p.T @ ((w * act)[:, None] * p) + l2 * np.eye(p.shape[1])
    n, d = p.shape
    k = theta.shape[1]
    s = squared_hinge_signs(y, k)
    act = 2.0 * (s * (p @ theta) < 1)
    h = np.zeros((d * k, d * k))
    for i in range(n):
        h += w[i] * np.kron(np.outer(p[i], p[i]), np.diag(act[i]))
    return h + l2 * np.eye(d * k)


def onehot_ridge_grad(theta, p, y, l2, w):
    """∇ = Pᵀ W (PΘ − Y_onehot) + λΘ."""
    t = np.eye(theta.shape[1])[y]
    return p.T @ (w[:, None] * (p @ theta - t)) + l2 * theta
