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
