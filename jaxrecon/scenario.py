"""The composition layer (DESIGN §5): a scenario, and the steps every experiment composes.

    import jaxrecon as jr
    sc = jr.make_scenario(jr.load_digits(), model="softmax", key=jax.random.key(0))
    theta = jr.fit(sc).params                              # θ⁺ on the full training set
    deleted = jr.draw_deletions(sc, 50)                    # [B] training positions
    after = jr.make_unlearn(sc, theta)(deleted)            # θ⁻ [B, ...] and diagnostics
    recon = jr.make_attack(sc, theta, ["hrec", "avg", "maxdiff"])(after.params, deleted)
    scores = jr.score(sc, recon, deleted)                  # cosine, MSE, labels per deletion

Three modules hold it, one per concept: this one (the scenario: who holds which data, the model,
the feature map, the attacker's knowledge; training; utility), `unlearners` (the registry of
unlearning methods, `make_unlearn`) and `reconstruction` (the registry of attacks, `make_attack`,
`score`). Notebooks, `experiments/`, `benchmarks/` and the engine (`jaxrecon run`) all compose them;
the policy lives here and nowhere else: which solver and which unlearning kernel serve a model of a
given size (by the model's properties, never its name), the label rule, the public
standardisation, the random-feature map, the attacker's Hessian, the attack list and the scores.

Pytrees, not closures. A `Scenario` holds its arrays (the three data roles, l2, the feature map's
random draw, the attacker's knowledge, a PRNG key) as pytree leaves and its static choices (the
model, the data box, a description) as pytree metadata, so jitted functions take it as an argument
and never bake large constants into a compiled program. `Unlearner` and `Attack` are pytrees in
the same way: call one on a batch of deletions and it runs one compiled function, compiled once per
shape (one compilation serves every chunk of a run); their `apply` methods are the same
computation unjitted, to compose inside your own `jit`, `vmap` or `shard_map`.

Deletions are given one way everywhere (`as_deletions`): [B] positions into the training set (one
record per deletion) or [B, k] (k records removed together, where the kernel allows it).

The attacker's knowledge (DESIGN §2) is its own object, `Attacker`: the training-set size n and
the l2 it believes, its public data, and whether it knows the deleted record's label. The default
is the paper's attacker: the true n and l2, the scenario's public split, label unknown (HRec
recovers it). Pass another `Attacker` to `make_attack` to ask what a weaker one recovers:
`make_attacker` sets its beliefs, `shifted_public` gives it public data from a shifted
distribution (another class balance, another data set, noisy inputs; `PUBLIC_SHIFTS`).

Randomness: `make_scenario` takes the run's key and keeps it; every consumer derives its own
subkey by purpose (`subkey`): the data split, the deletions, the feature map, the training and
unlearning preconditioner sketches, the attacks' shadow models, the shifted public data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import _validate
from jaxrecon import data as _data
from jaxrecon import features as _features
from jaxrecon import metrics as _metrics
from jaxrecon import models as _models
from jaxrecon import solvers as _solvers
from jaxrecon import unlearning as _unlearning
from jaxrecon.errors import InputError
from jaxrecon.models import BINARY, REGRESSION, Model
from jaxrecon.solvers import FitResult

# Parameter counts P = D·K up to this train by dense Newton, precondition Newton-CG with a dense
# Cholesky factor, and let the attacker form Ĥ once as a matrix; above it everything runs on
# Hessian-vector products.
DENSE_LIMIT = 3000
NYSTROM_RANK = 200
# DESIGN §3.5: an unlearned model is "exact" when its relative gradient norm is at most this.
EXACT_TOL = 1e-8
FEATURES = ("identity", "rff")
DTYPES = ("float64", "float32")
# The kinds of `shifted_public`, as written in a spec ("none", "balance:4", "dataset:NAME", ...).
PUBLIC_SHIFTS = ("none", "balance:<R>", "dataset:<NAME>", "noise:<SIGMA>")


class Data(NamedTuple):
    """One data role's arrays.

    Attributes:
      x: [N, d] inputs in the run's dtype.
      features: [N, D] model features φ(x) with the bias coordinate last.
      labels: [N] labels as the model learns them: int32 classes, or real targets.
    """

    x: jax.Array
    features: jax.Array
    labels: jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["public", "n_train", "l2"],
    meta_fields=["label_known"],
)
@dataclasses.dataclass(frozen=True)
class Attacker:
    """What the attacker knows (DESIGN §2), as a pytree.

    Attributes:
      public: its public samples (inputs, features, labels), disjoint from the training set.
      n_train: the training-set size n it believes (int32 scalar): Ĥ is scaled to n − 1 samples.
      l2: the regulariser it believes (scalar in the run's dtype).
      label_known: whether it knows the deleted record's label (gradient matching then tries only
        that label). HRec never needs it.
    """

    public: Data
    n_train: jax.Array
    l2: jax.Array
    label_known: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class ScenarioInfo:
    """How a scenario was drawn, for reports (host-side; compared by identity under jit).

    Attributes:
      dataset: the pooled data as the model sees it (task view, public standardisation).
      roles: positions of the train / public / test rows in `dataset`.
      label_rule: the rule from raw labels to the model's labels, in words.
      feature_info: the feature map for summary.json ({"name": ...}, RFF size and bandwidth).
    """

    dataset: _data.Dataset
    roles: _data.Split
    label_rule: str
    feature_info: dict[str, Any]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["train", "public", "test", "l2", "feature_params", "attacker", "key"],
    meta_fields=["model", "box", "info"],
)
@dataclasses.dataclass(frozen=True)
class Scenario:
    """Who holds which data, the model, the feature map and the attacker's knowledge.

    Attributes:
      train: the operator's training set (n rows); deletions are positions into it.
      public: the public split (the default attacker's public data).
      test: held-out rows for utility scores only.
      l2: the true regulariser λ (scalar in the run's dtype).
      feature_params: the random draw of the feature map (`features.RFFParams`), or None for
        identity features; `feature_map` rebuilds φ from it.
      attacker: the attacker's knowledge (`Attacker`).
      key: the run's PRNG key; `subkey(key, purpose)` derives each consumer's key.
      model: the model family (static).
      box: (lower, upper), the box the inputs live in (reconstructions are clipped to it).
      info: how it was drawn (`ScenarioInfo`), or None.
    """

    train: Data
    public: Data
    test: Data
    l2: jax.Array
    feature_params: Any
    attacker: Attacker
    key: jax.Array
    model: Model
    box: tuple[float, float]
    info: ScenarioInfo | None = None

    @property
    def feature_map(self) -> _features.FeatureMap:
        """φ, rebuilt from `feature_params` (traced inside jit: no constants)."""
        return _features.feature_map(self.feature_params)

    @property
    def n_train(self) -> int:
        """The true training-set size n."""
        return self.train.features.shape[0]

    @property
    def param_count(self) -> int:
        """P = D·K, the number of model parameters."""
        return int(np.prod(self.model.param_shape(self.train.features.shape[1])))


# ---------------------------------------------------------------------------------------------
# Building a scenario.


_KEY_PURPOSES = {
    "data": ("split", 0),
    "split": ("split", 1),
    "deletions": ("split", 2),
    "features": ("fold", 1),
    "fit": ("fold", 2),
    "unlearn": ("fold", 3),
    "attack": ("fold", 4),
    "release": ("fold", 5),
    "shards": ("fold", 6),
    "public": ("fold", 7),
}


def subkey(key: jax.Array, purpose: str) -> jax.Array:
    """The subkey of `key` for one purpose: "data" (generated data sets, the CIFAR-10 shuffle),
    "split", "deletions", "features" (the random Fourier draw), "fit" and "unlearn" (the
    Nyström sketches and the Lanczos start of the K-FAC correction of large models, which set
    only the speed), "attack" (shadow models), "release" (noise on released models, objective
    perturbation), "shards" (SISA) or "public" (the attacker's shifted public data,
    `shifted_public`)."""
    _validate.choice("purpose", purpose, _KEY_PURPOSES)
    kind, index = _KEY_PURPOSES[purpose]
    if kind == "split":
        return jax.random.split(key, 3)[index]
    return jax.random.fold_in(key, index)


def make_scenario(
    dataset: _data.Dataset,
    *,
    model: str | Model,
    key: jax.Array,
    n_train: int = 1000,
    n_public: int | None = None,
    l2: float = 1.0,
    features: str = "identity",
    rff_dim: int = 4096,
    rff_bandwidth: float | None = None,
    dtype: str | None = None,
    roles: _data.Split | None = None,
) -> Scenario:
    """Draws the roles of `dataset` and everything a model of family `model` needs.

    The policy, in order: the model's task decides which labels it learns (`task_labels`) and
    which view of the data (`data.task_view`); the pool is split into a test split (10%), n
    training rows and m public rows (`data.split`); tabular numeric columns are standardised
    with public-row statistics only (`data.standardize_public`, which the attacker can
    reproduce); the feature map is drawn (random Fourier features with the bandwidth given, or
    the median pairwise distance of the public inputs); every role's features are computed once.

    Args:
      dataset: pooled data (`data.load_dataset`, `data.load_digits`, ...).
      model: a name of `models.MODELS` ("svm" is binary on two-class data and one-vs-rest on
        more) or a `models.Model`.
      key: the run's PRNG key (see `subkey`).
      n_train: n, the training-set size (>= 2).
      n_public: m, the public samples; None = every row not in the training or test split.
      l2: the regulariser λ > 0 (strong convexity).
      features: "identity" (p = [x, 1]) or "rff" (random Fourier features plus the bias).
      rff_dim: F, the number of random Fourier features.
      rff_bandwidth: σ of the RFF kernel; None = the median heuristic on the public inputs.
      dtype: "float64" or "float32"; None = float64 when jax_enable_x64 is on, else float32.
      roles: fixed positions of the train / public / test rows (disjoint, each non-empty, at
        least two training rows) instead of a seeded split; `n_train` and `n_public` are then
        ignored.

    Returns:
      A `Scenario` with the default (truthful) `Attacker`.

    Raises:
      InputError: naming the argument and its value.
    """
    dtype = _dtype(dtype)
    _validate.integer("n_train", n_train, minimum=2)
    if n_public is not None:
        _validate.integer("n_public", n_public, minimum=1)
    _validate.positive("l2", l2, why="the objective must be strongly convex")
    _validate.choice("features", features, FEATURES)
    _validate.integer("rff_dim", rff_dim, minimum=1)
    if rff_bandwidth is not None:
        _validate.positive("rff_bandwidth", rff_bandwidth)
    model = _model_for(model, dataset)
    dataset = _data.task_view(dataset, model.task)
    labels = task_labels(dataset, model.task)
    if roles is None:
        roles = _data.split(subkey(key, "split"), len(labels), n_train, n_public)
    else:
        roles = _checked_roles(roles, len(labels))
    dataset = _data.standardize_public(dataset, roles.public)
    params, feature_info = _draw_features(
        subkey(key, "features"), dataset, roles.public, features, rff_dim, rff_bandwidth, dtype
    )
    apply = jax.jit(lambda p, x: _features.feature_map(p).apply(x))
    label_dtype = dtype if model.task == REGRESSION else jnp.int32

    def role(rows):
        x = jnp.asarray(dataset.x[rows], dtype)
        return Data(x, apply(params, x), jnp.asarray(labels[rows], label_dtype))

    public = role(roles.public)
    l2 = jnp.asarray(l2, dtype)
    return Scenario(
        train=role(roles.train),
        public=public,
        test=role(roles.test),
        l2=l2,
        feature_params=params,
        attacker=Attacker(public, jnp.asarray(len(roles.train), jnp.int32), l2),
        key=key,
        model=model,
        box=(float(dataset.x_min), float(dataset.x_max)),
        info=ScenarioInfo(dataset, roles, label_rule(dataset, model.task), feature_info),
    )


def make_attacker(
    scenario: Scenario,
    *,
    n_train: int | None = None,
    l2: float | None = None,
    public: Data | None = None,
    label_known: bool = False,
) -> Attacker:
    """An attacker who believes `n_train` and `l2` and holds `public`; None = the truth."""
    truth = scenario.attacker
    if n_train is not None:
        _validate.integer("n_train", n_train, minimum=2)
    if l2 is not None:
        _validate.positive("l2", l2)
    return Attacker(
        truth.public if public is None else public,
        truth.n_train if n_train is None else jnp.asarray(n_train, jnp.int32),
        truth.l2 if l2 is None else jnp.asarray(l2, truth.l2.dtype),
        bool(label_known),
    )


def shifted_public(
    scenario: Scenario,
    shift: str,
    *,
    key: jax.Array,
    dataset: _data.Dataset | None = None,
) -> Data:
    """Public data for the attacker drawn under a distribution shift (DESIGN §2's knob).

    The attacker of the paper holds m public samples from the training distribution. This gives
    it m samples (m = the scenario's public split) from a shifted one instead, for
    `make_attacker(scenario, public=...)`. `shift` is one of `PUBLIC_SHIFTS`:

    - "none": the scenario's public split unchanged.
    - "balance:<R>" (classifiers; R >= 1): another class balance. m rows re-drawn without
      replacement from the pool rows that are neither training nor test rows (the public split
      plus the rows no role used), class c of the K classes (in label order) with weight
      w_c ∝ R^(−c/(K−1)): a long tail, the first class R times as frequent as the last (R = 1:
      uniform). The counts are the largest-remainder rounding of m·w_c. A class with fewer pool
      rows than its count gives all it has and its shortfall goes to the other classes in
      proportion to their weights (repeatedly, until every count fits), so m rows are always
      drawn; when the pool holds only m rows (`n_public` None) they are the public split itself.
    - "dataset:<NAME>": public inputs from another data set of the same input dimension (and
      image shape), e.g. `dataset:fashion_mnist` against an MNIST model; pass it loaded as
      `dataset` (`data.load_dataset(NAME, ...)`). The same task view (`data.task_view`) and label
      rule (`task_labels`) as the scenario; tabular numeric columns are standardised with the
      statistics of the rows drawn (the attacker's own, like `data.standardize_public`), and
      both data sets must then name the same columns. m rows without replacement (every row
      when it has fewer). The scenario's own data set is refused: its rows include the
      training set.
    - "noise:<SIGMA>": x + SIGMA·ε, ε ~ N(0, I), on the public inputs (SIGMA >= 0, input units),
      clipped to the data box `scenario.box`; labels unchanged. "noise:0" is "none".

    Features are recomputed with the scenario's feature map (the attacker knows it). Host-side
    NumPy and JAX; not jittable (the row draws have data-dependent sizes).

    Args:
      scenario: the scenario (needs its `info`, which `make_scenario` fills).
      shift: the spec, e.g. "balance:4", "dataset:fashion_mnist", "noise:0.1".
      key: the PRNG key of the draws (e.g. `subkey(scenario.key, "public")`).
      dataset: the other data set of "dataset:<NAME>" (ignored by the other shifts).

    Returns:
      `Data` in the scenario's dtypes: x [m', d], features [m', D], labels [m'] (m' = m, except
      a "dataset:" with fewer rows).

    Raises:
      InputError: naming `public_shift`: a bad spec, "balance" on a regression model, a
        "dataset:" without `dataset`, with another input shape or columns, or classes the
        model does not have.
    """
    kind, value = parse_public_shift(shift)
    public = scenario.public
    if kind == "none" or (kind == "noise" and value == 0):
        return public
    if scenario.info is None:
        raise _validate.fail("scenario", "needs its info (build it with make_scenario)")
    if kind == "noise":
        lower, upper = scenario.box
        noise = jax.random.normal(key, public.x.shape, public.x.dtype)
        x = jnp.clip(public.x + value * noise, lower, upper)
        return Data(x, _apply_features(scenario.feature_params, x), public.labels)
    if kind == "balance":
        return _rebalanced_public(scenario, value, key)
    return _foreign_public(scenario, value, dataset, key)


def parse_public_shift(shift: str) -> tuple[str, Any]:
    """A `shifted_public` spec as (kind, value): ("none", None), ("balance", R: float),
    ("dataset", NAME: str) or ("noise", SIGMA: float); checks everything but the data.

    Raises:
      InputError: naming `public_shift` and the spec.
    """
    kind, sep, arg = str(shift).partition(":")
    if kind == "none" and not sep:
        return kind, None
    if kind not in ("balance", "dataset", "noise") or not arg:
        raise _validate.fail(
            "public_shift", f"unknown shift {shift!r}; choose from {', '.join(PUBLIC_SHIFTS)}"
        )
    if kind == "dataset":
        try:
            _data.parse_dataset_name(arg)
        except InputError as err:
            raise _validate.fail("public_shift", f"{shift!r}: {err}") from None
        return kind, arg
    try:
        number = float(arg)
    except ValueError:
        number = math.nan
    least = 1.0 if kind == "balance" else 0.0
    if not math.isfinite(number) or number < least:
        what = "R, a number >= 1" if kind == "balance" else "SIGMA, a number >= 0"
        raise _validate.fail("public_shift", f"{kind} needs {what}, got {shift!r}")
    return kind, number


def class_weights(ratio: float, num_classes: int) -> np.ndarray:
    """The class proportions of "balance:<R>": w_c ∝ R^(−c/(K−1)), c = 0..K−1, summing to 1."""
    w = float(ratio) ** (-np.arange(num_classes) / max(num_classes - 1, 1))
    return w / w.sum()


# φ(x) by the same program as `make_scenario`'s, so unshifted inputs give identical features.
_apply_features = jax.jit(lambda params, x: _features.feature_map(params).apply(x))


def _rebalanced_public(scenario: Scenario, ratio: float, key: jax.Array) -> Data:
    """ "balance:<R>": m pool rows (neither train nor test) re-drawn to `class_weights`."""
    if scenario.model.task == REGRESSION:
        raise _validate.fail(
            "public_shift", f"balance:{ratio:g} needs a classifier, not {scenario.model.name}"
        )
    info = scenario.info
    labels = task_labels(info.dataset, scenario.model.task)
    num_classes = 2 if scenario.model.task == BINARY else int(info.dataset.num_classes)
    used = np.concatenate([info.roles.train, info.roles.test])
    pool = np.setdiff1d(np.arange(len(labels)), used)
    m = int(scenario.public.labels.shape[0])
    available = np.bincount(labels[pool], minlength=num_classes)
    counts = _balanced_counts(class_weights(ratio, num_classes), available, m)
    # One permutation of the pool; each class takes its first rows in that order.
    order = pool[np.asarray(jax.random.permutation(key, len(pool)))]
    rows = np.sort(
        np.concatenate([order[labels[order] == c][: counts[c]] for c in range(num_classes)])
    )
    return _role_data(scenario, info.dataset.x[rows], labels[rows])


def _balanced_counts(weights: np.ndarray, available: np.ndarray, m: int) -> np.ndarray:
    """Integer counts summing to m (<= available.sum()), proportional to `weights` where they
    fit: classes whose share exceeds their rows are capped and their shortfall is spread over
    the others by weight, then the largest-remainder rounding of the shares."""
    counts = np.zeros(len(weights), np.int64)
    active = np.ones(len(weights), bool)
    remaining = m
    while True:
        if not active.any():
            return counts
        share = np.where(active, remaining * weights / weights[active].sum(), 0.0)
        full = active & (share >= available)
        if not full.any():
            break
        counts[full] = available[full]
        remaining -= int(available[full].sum())
        active &= ~full
    floor = np.floor(share).astype(np.int64)
    extra = remaining - int(floor[active].sum())
    # share < available on active classes, so rounding up never exceeds a class's rows.
    order = np.argsort(-np.where(active, share - floor, -1.0), kind="stable")[:extra]
    floor[order] += 1
    return np.where(active, floor, counts)


def _foreign_public(
    scenario: Scenario, name: str, dataset: _data.Dataset | None, key: jax.Array
) -> Data:
    """ "dataset:<NAME>": m rows of another data set, seen and labelled like the scenario's."""
    if dataset is None:
        raise _validate.fail(
            "public_shift", f"dataset:{name} needs the loaded data set (pass dataset=)"
        )
    own, task = scenario.info.dataset, scenario.model.task
    other = _data.task_view(dataset, task)
    if (other.name, other.source, other.num_classes) == (own.name, own.source, own.num_classes):
        raise _validate.fail(
            "public_shift",
            f"dataset:{name} is the scenario's own data set, whose rows include the training "
            "set; use none or balance:<R>",
        )
    d = int(scenario.public.x.shape[1])
    images = own.image_shape is not None and other.image_shape is not None
    if other.x.shape[1] != d or (images and own.image_shape != other.image_shape):
        shape = other.image_shape or (other.x.shape[1],)
        mine = own.image_shape or (d,)
        raise _validate.fail(
            "public_shift",
            f"dataset:{name} has inputs of shape {list(shape)}, the model's are {list(mine)}",
        )
    if own.feature_names is not None and other.feature_names != own.feature_names:
        raise _validate.fail(
            "public_shift", f"dataset:{name} has other columns than {own.name} (tabular data)"
        )
    if task != REGRESSION and other.num_classes is None:
        raise _validate.fail("public_shift", f"dataset:{name} has no class labels")
    labels = task_labels(other, task)
    num_outputs = scenario.model.num_outputs
    if task != REGRESSION and num_outputs is not None and labels.max() >= num_outputs:
        raise _validate.fail(
            "public_shift",
            f"dataset:{name} has {other.num_classes} classes, the model {num_outputs}",
        )
    m = int(scenario.public.labels.shape[0])
    count = len(labels)
    rows = np.sort(np.asarray(jax.random.choice(key, count, (min(m, count),), replace=False)))
    other = _data.standardize_public(other, rows)
    return _role_data(scenario, other.x[rows], labels[rows])


def _role_data(scenario: Scenario, x: np.ndarray, labels: np.ndarray) -> Data:
    """Inputs and model labels as `Data` in the scenario's dtypes, features by its map."""
    x = jnp.asarray(x, scenario.public.x.dtype)
    labels = jnp.asarray(labels, scenario.public.labels.dtype)
    return Data(x, _apply_features(scenario.feature_params, x), labels)


def task_labels(dataset: _data.Dataset, task: str) -> np.ndarray:
    """The labels a model of `task` learns from the raw labels of `dataset`.

    - regression: the raw value (digits: the digit 0..9 as a number), or the data set's own
      regression target once `data.task_view` has put it in place of the label;
    - binary: the raw binary label; for K > 2 classes y >= K // 2 (digits: digit >= 5); for
      real-valued targets y > median(y);
    - multiclass: the raw class id (needs a classification data set).

    Raises:
      InputError: a multiclass model on real-valued targets.
    """
    y = dataset.y
    if task == REGRESSION:
        return y.astype(np.float64)
    if task == BINARY:
        if dataset.num_classes is None:
            return (y > np.median(y)).astype(np.int64)
        if dataset.num_classes == 2:
            return y.astype(np.int64)
        return (y >= dataset.num_classes // 2).astype(np.int64)
    if dataset.num_classes is None:
        raise _validate.fail(
            "model",
            f"a multiclass model needs class labels, but data set {dataset.name!r} has "
            "real-valued targets",
        )
    return y.astype(np.int64)


def label_rule(dataset: _data.Dataset, task: str) -> str:
    """`task_labels`' rule for this data set, in words (summary.json `data.label_rule`)."""
    what = f" ({dataset.label_name})" if dataset.label_name else ""
    if task == REGRESSION:
        if dataset.regression_target:
            return f"regression on {dataset.regression_target}"
        return f"regression on the raw label value{what}"
    if task == BINARY:
        if dataset.num_classes is None:
            target = f" ({dataset.regression_target})" if dataset.regression_target else ""
            return f"binary: y > median(y){target}"
        if dataset.num_classes == 2:
            return f"binary: raw label{what}"
        return f"binary: y >= {dataset.num_classes // 2}{what}"
    return f"multiclass: raw class id{what}"


def draw_deletions(scenario: Scenario, count: int, per_request: int = 1) -> np.ndarray:
    """`count` deletion requests of `per_request` distinct training records each, drawn with the
    scenario's "deletions" key: [count] sorted positions (one record per request), or
    [count, per_request] (every record in one request at most; rows sorted, requests in the
    order drawn). The single-record draw is the first column's set of the same key's choice."""
    _validate.integer("deletions_per_request", per_request, minimum=1)
    _validate.integer("deletions", count * per_request, minimum=1, maximum=scenario.n_train)
    key = subkey(scenario.key, "deletions")
    chosen = np.asarray(
        jax.random.choice(key, scenario.n_train, (count * per_request,), replace=False)
    )
    if per_request == 1:
        return np.sort(chosen)
    return np.sort(chosen.reshape(count, per_request), axis=1)


def as_deletions(deleted) -> jax.Array:
    """`deleted` as an integer array of training positions, [B] (one record per deletion) or
    [B, k] (k records removed together).

    Raises:
      InputError: not a 1-D or 2-D integer array.
    """
    deleted = jnp.asarray(deleted)
    if deleted.ndim not in (1, 2) or not jnp.issubdtype(deleted.dtype, jnp.integer):
        raise _validate.fail(
            "deleted",
            f"need [B] or [B, k] integer training positions, got {deleted.dtype} array of "
            f"shape {deleted.shape}",
        )
    return deleted


def _checked_roles(roles: _data.Split, size: int) -> _data.Split:
    rows = [np.asarray(r) for r in roles]
    for name, r, least in zip(("train", "public", "test"), rows, (2, 1, 1), strict=True):
        if r.ndim != 1 or len(r) < least or not np.issubdtype(r.dtype, np.integer):
            raise _validate.fail("roles", f"{name}: need >= {least} integer positions")
        if r.min() < 0 or r.max() >= size or len(np.unique(r)) != len(r):
            raise _validate.fail("roles", f"{name}: positions must be distinct and in [0, {size})")
    if len(np.unique(np.concatenate(rows))) != sum(len(r) for r in rows):
        raise _validate.fail("roles", "train, public and test must be disjoint")
    return _data.Split(*rows)


def _dtype(dtype: str | None) -> jnp.dtype:
    if dtype is None:
        return jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    _validate.choice("dtype", dtype, DTYPES)
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise _validate.fail(
            "dtype", "float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))"
        )
    return jnp.dtype(dtype)


def _model_for(model: str | Model, dataset: _data.Dataset) -> Model:
    if isinstance(model, Model):
        return model
    _validate.choice("model", model, _models.MODELS)
    try:
        return _models.make_model(model, dataset.num_classes)
    except ValueError:
        raise _validate.fail(
            "model",
            f"{model} needs class labels, but data set {dataset.name!r} has real-valued targets",
        ) from None


def _draw_features(key, dataset, public, name, rff_dim, bandwidth, dtype):
    """The feature map's random draw (None for identity) and its summary.json description."""
    if name == "identity":
        return None, {"name": "identity"}
    rule = "given"
    if bandwidth is None:
        bandwidth = float(_features.median_bandwidth(jnp.asarray(dataset.x[public])))
        rule = "median pairwise distance of the public inputs"
    params = _features.rff_params(key, dataset.x.shape[1], rff_dim, bandwidth, dtype)
    info = {"name": "rff", "num_features": rff_dim, "bandwidth": bandwidth, "bandwidth_rule": rule}
    return params, info


# ---------------------------------------------------------------------------------------------
# Training and utility.


def fit(
    scenario: Scenario,
    *,
    weights: jax.Array | None = None,
    linear: jax.Array | None = None,
    init: jax.Array | None = None,
) -> FitResult:
    """θ⁺ on the training set, the solver chosen by the model's properties.

    Quadratic losses (ridge, one-hot ridge): closed form. P <= DENSE_LIMIT: Newton with dense
    Cholesky solves. Larger: Newton-CG preconditioned by the Kronecker-factored Hessian at the
    start (`unlearning.hessian_kfac`; exact at θ = 0 for softmax); it sets only the speed, the
    answer is exact to the reported gradient norm. Pure; jit it (`jax.jit(fit)(scenario)`).

    Args:
      scenario: the scenario.
      weights: [n] 0/1 sample weights (default: every training record), e.g. a SISA shard.
      linear: b, shaped like θ: minimise L(θ) + bᵀθ (objective perturbation; Newton only).
      init: a warm start for Newton (default zeros).
    """
    model, train, l2 = scenario.model, scenario.train, scenario.l2
    if weights is None:
        weights = jnp.ones(train.features.shape[0], train.features.dtype)
    if model.target is not None and linear is None:
        targets = model.target(train.labels, train.features.dtype)
        return _solvers.fit_ridge(train.features, targets, l2=l2, weights=weights)
    newton = functools.partial(
        _solvers.fit_newton,
        model,
        train.features,
        train.labels,
        l2=l2,
        weights=weights,
        init=init,
        linear=linear,
    )
    if scenario.param_count <= DENSE_LIMIT:
        return newton()
    start = model.init(train.features.shape[1], train.features.dtype) if init is None else init
    factors = _unlearning.hessian_kfac(
        model, start, train.features, l2=l2, labels=train.labels, weights=weights
    )
    return newton(
        linear_solver="cg",
        cg_max_steps=500,
        precond=functools.partial(_solvers.apply_kronecker, factors),
    )


class Utility(NamedTuple):
    """The model's quality: R² (regression) or accuracy (classification) on train and test."""

    score_name: str
    train_score: float
    test_score: float


def utility(scenario: Scenario, params: jax.Array) -> Utility:
    """R² for regression, accuracy for classifiers, on the training and the test split."""
    model = scenario.model

    def on(role: Data) -> float:
        z = _models.logits(params, role.features)
        if model.task == REGRESSION:
            return float(_metrics.r2_score(model.link(z), role.labels))
        return float(_metrics.accuracy(model.classify(z), role.labels))

    name = "r2" if model.task == REGRESSION else "accuracy"
    return Utility(name, on(scenario.train), on(scenario.test))


def nystrom_sketch(
    scenario: Scenario,
    params: jax.Array,
    purpose: str = "fit",
    weights: jax.Array | None = None,
) -> _solvers.NystromPreconditioner:
    """A rank-`NYSTROM_RANK` (at most P) Nyström preconditioner of the training Hessian (of L_w
    with `weights`) at `params`, sketched with the key of `purpose` ("fit" at θ = 0, "unlearn"
    at θ⁺); it sets only the speed of Newton-CG, never the answer."""
    train = scenario.train
    return _unlearning.hessian_nystrom(
        subkey(scenario.key, purpose),
        scenario.model,
        params,
        train.features,
        l2=scenario.l2,
        rank=min(NYSTROM_RANK, scenario.param_count),
        labels=train.labels,
        weights=weights,
    )
