"""Reconstruction attacks as registry entries (DESIGN §3.2-§3.4, §3.7): `make_attack`, `score`.

    attack = make_attack(scenario, theta, ["hrec", "avg", "maxdiff"], attacker=None)
    recon = attack(thetas_after, deleted)       # {name: AttackResult batched over B}
    scores = score(scenario, recon, deleted)    # {name: Scores}: cosine, MSE, labels, no signal

`ATTACKS` maps an attack's name to an `AttackSpec(apply, title, prepare, ...)`: `apply` maps a
batch of θ⁻ to reconstructions given the pieces every attack shares (`AttackContext`: the
attacker's Ĥ, the Avg prior, the feature map's inverse); `prepare` (optional) trains what the
attack needs once (Updates-Leak's shadow models and decoder). A new attack is one entry here and
one kernel in `attacks`. The attacker's knowledge is an `scenario.Attacker`: by default the truth.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import _validate
from jaxrecon import attacks as _attacks
from jaxrecon import features as _features
from jaxrecon import metrics as _metrics
from jaxrecon import models as _models
from jaxrecon import shadow as _shadow
from jaxrecon import unlearning as _unlearning
from jaxrecon.attacks import AttackResult
from jaxrecon.models import BINARY, MULTICLASS, REGRESSION
from jaxrecon.scenario import DENSE_LIMIT, Attacker, Data, Scenario, as_deletions, subkey


class AttackContext(NamedTuple):
    """What the attacks of one batch share, built inside the traced function.

    Attributes:
      scenario, attacker: the scenario and the attacker's knowledge.
      params: θ⁺.
      feature_map: φ (rebuilt from the scenario's traced feature parameters).
      invert: p̂ [D] -> x̂ [d]: exact for identity features, numerical inversion otherwise.
      prior: the Avg guess (mean public input, majority public label).
      hessian_matvec: v -> Ĥv, the attacker's public-data Hessian at θ⁺ (DESIGN §3.1).
      state: this attack's prepared state (`AttackSpec.prepare`), or None.
    """

    scenario: Scenario
    attacker: Attacker
    params: jax.Array
    feature_map: _features.FeatureMap
    invert: Callable[[jax.Array], jax.Array]
    prior: AttackResult
    hessian_matvec: Callable[[jax.Array], jax.Array]
    state: Any = None


class AttackSpec(NamedTuple):
    """One entry of `ATTACKS`.

    Attributes:
      apply: (context, θ⁻ [B, ...], deleted [B] or [B, k]) -> `AttackResult` batched over B
        (with a record axis [B, k, ...] when deleted is [B, k]); jittable.
      title: its name in figures.
      prepare: (scenario, attacker, θ⁺, key, **options) -> state, run once before the deletions
        (shadow models, a decoder); its keyword-only arguments are the options `prepare_attack`
        accepts; None when there is nothing to prepare.
      uses_hessian: it reads `hessian_matvec` (the attacker then forms Ĥ once for small P).
      no_signal: score 0 means the deletion left no trace and the answer is the prior (counted
        as `no_signal` in summaries).
      multi_record: it reconstructs the k records of a [B, k] deletion request.
    """

    apply: Callable[[AttackContext, jax.Array, jax.Array], AttackResult]
    title: str
    prepare: Callable[..., Any] | None = None
    uses_hessian: bool = False
    no_signal: bool = False
    multi_record: bool = False


def _hrec(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    if deleted.ndim == 2:
        return jax.vmap(
            lambda t: _attacks.hrec_records(
                ctx.scenario.model,
                ctx.feature_map,
                ctx.params,
                t,
                ctx.hessian_matvec,
                deleted.shape[1],
                invert=ctx.invert,
                fallback=ctx.prior,
            )
        )(thetas_after)
    return jax.vmap(
        lambda t: _attacks.hrec(
            ctx.scenario.model,
            ctx.feature_map,
            ctx.params,
            t,
            ctx.hessian_matvec,
            invert=ctx.invert,
            fallback=ctx.prior,
        )
    )(thetas_after)


def _avg(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    lanes = deleted.shape  # [B] or [B, k]: the same guess for every record
    return jax.tree.map(lambda a: jnp.broadcast_to(a, lanes + a.shape), ctx.prior)


def _maxdiff(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    public = ctx.attacker.public
    if deleted.ndim == 2:
        return jax.vmap(
            lambda t: _attacks.maxdiff_records(
                ctx.scenario.model,
                ctx.params,
                t,
                public.features,
                public.x,
                public.labels,
                deleted.shape[1],
            )
        )(thetas_after)
    return jax.vmap(
        lambda t: _attacks.maxdiff(
            ctx.scenario.model, ctx.params, t, public.features, public.x, public.labels
        )
    )(thetas_after)


def _informed(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    train = ctx.scenario.train
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    return jax.vmap(
        lambda w: _attacks.informed(
            ctx.scenario.model,
            ctx.feature_map,
            ctx.params,
            train.features,
            train.labels,
            w,
            l2=ctx.attacker.l2,
            invert=ctx.invert,
            fallback=ctx.prior,
        )
    )(masks)


def _gradmatch(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    model, public = ctx.scenario.model, ctx.attacker.public
    lower, upper = ctx.scenario.box
    starts = jnp.mean(public.x, axis=0, keepdims=True)

    def loss_fn(t, x, y):
        return _models.loss(model, t, ctx.feature_map.apply(x), y)

    def one(t, candidates):
        return _attacks.gradmatch(
            loss_fn, ctx.params, t, ctx.hessian_matvec, starts, candidates, lower=lower, upper=upper
        )

    if ctx.attacker.label_known:
        return jax.vmap(one)(thetas_after, ctx.scenario.train.labels[deleted][:, None])
    if model.task == REGRESSION:
        candidates = jnp.stack([jnp.min(public.labels), jnp.max(public.labels)])
    else:
        candidates = jnp.arange(model.num_outputs or 2, dtype=jnp.int32)
    return jax.vmap(lambda t: one(t, candidates))(thetas_after)


# How hrec-plus chooses its shrinkage intensity from the public data.
SHRINKAGE_RULES = ("validation", "ledoit-wolf")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["alpha", "curvatures", "hessian"],
    meta_fields=["ingredients", "num_groups"],
)
@dataclasses.dataclass(frozen=True)
class HRecPlusState:
    """The prepared hrec-plus attack (`_hrec_plus_prepare`).

    Attributes:
      alpha: the shrinkage intensity used (0 without shrinkage).
      curvatures: the attacker's per-sample public curvatures at θ⁺ after shrinkage ([m] or
        [m, K, K], scaled by (n−1)/m), for the matrix-free Ĥ; None without shrinkage, with a
        dense `hessian`, or rebased on other releases (then rebuilt at each θ⁺).
      hessian: the shrunk Ĥ at θ⁺ as a dense [P, P] matrix (P <= DENSE_LIMIT), or None.
      ingredients: the switches (`attacks.Ingredients`).
      num_groups: groups of the shrinkage target (the public classes; 1 for regression).
    """

    alpha: jax.Array
    curvatures: jax.Array | None
    hessian: jax.Array | None
    ingredients: _attacks.Ingredients
    num_groups: int


def _hrec_plus_prepare(
    scenario: Scenario,
    attacker: Attacker,
    params: jax.Array,
    key: jax.Array,
    *,
    box: bool = True,
    shrinkage: bool | str | float = True,
    path: int = 0,
    sign_rule: bool = True,
    refine: int = 0,
) -> HRecPlusState:
    """hrec-plus's ingredients (`attacks.Ingredients`) and its Ĥ, from the attacker's knowledge.

    Args:
      scenario, attacker, params, key: as `AttackSpec.prepare` (the key is not used).
      box: clip reconstructions to the data box.
      shrinkage: each public sample's curvature shrunk toward its class mean (a structured
        target: far fewer free numbers than Ĥ) with an intensity chosen from the public data:
        "validation" (True; `attacks.shrinkage_by_validation`: HRec simulated across two
        public folds), "ledoit-wolf" (Frobenius-optimal, `attacks.shrinkage_intensity`), or a
        number in [0, 1]; False = the raw public Ĥ (HRec's).
      path: Gauss–Legendre points of the path-averaged Ĥ (0 = Ĥ at θ⁺).
      sign_rule: public-data sign and scale for records whose bias coordinate is at the noise
        level (`attacks.robust_direction`).
      refine: Adam steps of gradient matching from the closed-form answer (0 = none).

    Raises:
      InputError: a bad option, or a sharded (SISA) release.
    """
    del key
    for name, value in (("box", box), ("sign_rule", sign_rule)):
        if not isinstance(value, bool):
            raise _validate.fail(name, f"True or False, got {value!r}")
    _validate.integer("path", path, minimum=0)
    _validate.integer("refine", refine, minimum=0)
    if shrinkage is True:
        shrinkage = "validation"
    if shrinkage in SHRINKAGE_RULES or shrinkage is False:
        fixed = shrinkage
    elif isinstance(shrinkage, int | float) and not isinstance(shrinkage, bool):
        if not 0 <= shrinkage <= 1:
            raise _validate.fail("shrinkage", f"an intensity must be in [0, 1], got {shrinkage!r}")
        fixed = float(shrinkage)
    else:
        rules = ", ".join(SHRINKAGE_RULES)
        raise _validate.fail(
            "shrinkage", f"{rules}, False or a number in [0, 1], got {shrinkage!r}"
        )
    if _shards(scenario, params):
        raise _validate.fail("attacks", "hrec-plus on sharded (SISA) releases")
    shrink = shrinkage is not False
    ingredients = _attacks.Ingredients(box, shrink, int(path), sign_rule, int(refine))
    groups = _shrinkage_groups(scenario.model)
    dense = scenario.param_count <= DENSE_LIMIT
    alpha, curvatures, hessian = _hrec_plus_hessian_jit(
        scenario, params, attacker, fixed, shrink=shrink, dense=dense, num_groups=groups
    )
    return HRecPlusState(alpha, curvatures, hessian, ingredients, groups)


def _shrinkage_groups(model) -> int:
    """The shrinkage target's groups: the public classes (binary: 2), or one for regression."""
    return {MULTICLASS: model.num_outputs, BINARY: 2, REGRESSION: 1}[model.task]


def _public_groups(model, public: Data) -> jax.Array:
    if model.task == REGRESSION:
        return jnp.zeros(public.labels.shape, jnp.int32)
    return public.labels.astype(jnp.int32)


def attacker_curvatures(
    scenario: Scenario,
    params: jax.Array,
    attacker: Attacker,
    alpha: jax.Array | None,
    num_groups: int,
) -> jax.Array:
    """The attacker's per-sample public curvatures at θ, scaled by (n−1)/m and (alpha not None)
    shrunk toward their class means with intensity alpha: Ĥ = Σ_k (p_k p_kᵀ) ⊗ C̃_k + l2·I."""
    model, public = scenario.model, attacker.public
    labels = public.labels if model.hessian_uses_labels else None
    curv = _models.curvature_matrices(model, params, public.features, labels)
    if alpha is not None:
        curv = _attacks.shrunk_curvatures(curv, _public_groups(model, public), num_groups, alpha)
    m = public.features.shape[0]
    return (jnp.asarray(attacker.n_train, curv.dtype) - 1) / m * curv


def _hrec_plus_hessian(scenario, params, attacker, fixed, *, shrink, dense, num_groups):
    """(alpha, curvatures at θ⁺ or None, dense Ĥ or None) of hrec-plus."""
    model, public = scenario.model, attacker.public
    if not shrink:  # the attack then uses HRec's Ĥ (`Attack.context`)
        return jnp.zeros((), public.features.dtype), None, None
    groups = _public_groups(model, public)
    if fixed == "ledoit-wolf":
        labels = public.labels if model.hessian_uses_labels else None
        raw = _models.curvature_matrices(model, params, public.features, labels)
        alpha = _attacks.shrinkage_intensity(public.features, raw, groups, num_groups)
    elif fixed == "validation":
        alpha = _attacks.shrinkage_by_validation(
            model,
            params,
            public.features,
            public.labels,
            groups,
            num_groups,
            n_train=attacker.n_train,
            l2=attacker.l2,
        )
    else:
        alpha = jnp.asarray(fixed, public.features.dtype)
    curv = attacker_curvatures(scenario, params, attacker, alpha, num_groups)
    hessian = None
    if dense:
        hessian = _models.hessian_from_curvatures(
            public.features, curv, l2=attacker.l2, param_shape=params.shape
        )
    return alpha, curv, hessian


_hrec_plus_hessian_jit = jax.jit(
    _hrec_plus_hessian, static_argnames=("fixed", "shrink", "dense", "num_groups")
)


def _hrec_plus(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    sc, attacker, state = ctx.scenario, ctx.attacker, ctx.state
    ing = state.ingredients
    public = attacker.public

    def hessian_at(theta):
        if not ing.shrinkage:
            return attacker_hessian_matvec(sc, theta, attacker)
        curv = attacker_curvatures(sc, theta, attacker, state.alpha, state.num_groups)
        return lambda v: _models.curvature_hvp(public.features, curv, v) + attacker.l2 * v

    if not ing.shrinkage:
        matvec = ctx.hessian_matvec
    elif state.hessian is not None:
        matvec = _attacks.dense_matvec(state.hessian)
    elif state.curvatures is not None:
        curv = state.curvatures
        matvec = lambda v: _models.curvature_hvp(public.features, curv, v) + attacker.l2 * v  # noqa: E731
    else:  # rebased on another θ⁺ (`Attack.apply_pairs`): the Ĥ there, the same intensity
        matvec = hessian_at(ctx.params)

    lower, upper = sc.box
    labels = sc.train.labels[deleted] if attacker.label_known else None

    def loss_fn(t, x, y):
        return _models.loss(sc.model, t, ctx.feature_map.apply(x), y)

    def one(theta_after, label):
        return _attacks.hrec_plus(
            sc.model,
            ctx.feature_map,
            ctx.params,
            theta_after,
            matvec,
            hessian_at=hessian_at,
            ingredients=ing,
            public_features=public.features,
            lower=lower,
            upper=upper,
            invert=ctx.invert,
            fallback=ctx.prior,
            label=label,
            loss_fn=loss_fn,
        )

    if labels is None:
        return jax.vmap(lambda t: one(t, None))(thetas_after)
    return jax.vmap(one)(thetas_after, labels)


class UpdatesLeakState(NamedTuple):
    """The prepared Updates-Leak attack: its decoder and the public probe set it reads."""

    decoder: _attacks.UpdatesLeakDecoder
    probe_features: jax.Array


# Updates-Leak: probe samples, shadow models and deletions per shadow model (400 training pairs).
UPDATES_LEAK_PROBES = 32
UPDATES_LEAK_SHADOWS = 8
UPDATES_LEAK_DELETIONS = 50


def _updates_leak_prepare(
    scenario: Scenario,
    attacker: Attacker,
    params: jax.Array,
    key: jax.Array,
    *,
    probes: int = UPDATES_LEAK_PROBES,
    shadows: int = UPDATES_LEAK_SHADOWS,
    deletions_per_shadow: int = UPDATES_LEAK_DELETIONS,
) -> UpdatesLeakState:
    """Salem et al. (2020) from public data only: shadow models of the target's family trained
    on subsets of the public pool (minus a fixed probe set), their own exact deletions
    (`shadow.shadow_updates`, vmapped over shadows and deletions), and a decoder from update
    signatures (posterior changes on the probes) to the deleted records.

    Args:
      scenario, attacker, params, key: as `AttackSpec.prepare`.
      probes: r, the first r public samples form the probe set (the paper probes with 100).
      shadows: S, shadow models.
      deletions_per_shadow: k, exact deletions per shadow (capped at the shadow's size); the
        decoder trains on S·k signatures.

    Raises:
      InputError: an option below 1, or fewer than probes + 10 public samples.
    """
    _validate.integer("probes", probes, minimum=1)
    _validate.integer("shadows", shadows, minimum=1)
    _validate.integer("deletions_per_shadow", deletions_per_shadow, minimum=1)
    model, public = scenario.model, attacker.public
    m = public.features.shape[0]
    if m < probes + 10:
        raise _validate.fail(
            "attacks", f"updates-leak needs at least {probes + 10} public samples, got {m}"
        )
    pool = Data(*(a[probes:] for a in public))
    size = min(int(attacker.n_train), max(2, (3 * (m - probes)) // 4))
    k_shadow, k_decoder = jax.random.split(key)
    solver = "dense" if scenario.param_count <= DENSE_LIMIT else "cg"
    data = _shadow_updates_jit(
        k_shadow,
        model,
        pool.features,
        pool.labels,
        pool.x,
        public.features[:probes],
        num_shadow=shadows,
        shadow_size=size,
        deletions_per_shadow=min(deletions_per_shadow, size),
        l2=attacker.l2,
        linear_solver=solver,
    )
    num_classes = {MULTICLASS: model.num_outputs, BINARY: 2, REGRESSION: None}[model.task]
    lower, upper = scenario.box
    decoder = jax.jit(
        lambda k, s, x, y: _attacks.fit_updates_leak_decoder(
            k, s, x, y, num_classes=num_classes, lower=lower, upper=upper
        )
    )(k_decoder, data.signatures, data.targets, data.labels)
    return UpdatesLeakState(decoder, public.features[:probes])


def _updates_leak(ctx: AttackContext, thetas_after, deleted) -> AttackResult:
    state = ctx.state
    return jax.vmap(
        lambda t: _attacks.apply_updates_leak_decoder(
            state.decoder,
            _attacks.updates_leak_signature(
                ctx.scenario.model, ctx.params, t, state.probe_features
            ),
        )
    )(thetas_after)


ATTACKS: dict[str, AttackSpec] = {
    "hrec": AttackSpec(_hrec, "HRec", uses_hessian=True, no_signal=True, multi_record=True),
    "hrec-plus": AttackSpec(
        _hrec_plus, "HRec+", prepare=_hrec_plus_prepare, uses_hessian=True, no_signal=True
    ),
    "avg": AttackSpec(_avg, "Avg", multi_record=True),
    "maxdiff": AttackSpec(_maxdiff, "MaxDiff", multi_record=True),
    "informed": AttackSpec(_informed, "Informed", no_signal=True),
    "gradmatch": AttackSpec(_gradmatch, "GradMatch", uses_hessian=True),
    "updates-leak": AttackSpec(_updates_leak, "Updates-Leak", prepare=_updates_leak_prepare),
}
# The paper's comparison; the others cost more or assume more.
DEFAULT_ATTACKS = ("hrec", "avg", "maxdiff")
HESSIAN_MODES = ("auto", "dense", "matrix-free")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["scenario", "attacker", "params", "hessian", "states"],
    meta_fields=["names"],
)
@dataclasses.dataclass(frozen=True)
class Attack:
    """Attacks ready to run on deletions of one θ⁺ (`make_attack`).

    Call it on a batch: `attack(thetas_after, deleted)` -> {name: `AttackResult` batched over
    B}, one compiled function per batch shape. `apply` is the same, unjitted.

    Attributes:
      scenario, attacker, params: the scenario, the attacker's knowledge and θ⁺.
      hessian: Ĥ as a dense [P, P] matrix (small P), or None (Hessian-vector products).
      states: each attack's prepared state (or None), in the order of `names`.
      names: the attacks, names of `ATTACKS`.
    """

    scenario: Scenario
    attacker: Attacker
    params: jax.Array
    hessian: jax.Array | None
    states: tuple[Any, ...]
    names: tuple[str, ...]

    def context(self) -> AttackContext:
        """The shared pieces of every attack (call inside the traced function)."""
        sc, attacker = self.scenario, self.attacker
        fmap = sc.feature_map
        invert = fmap.invert
        if invert is None:
            lower, upper = sc.box
            invert = _attacks.feature_inverter(
                fmap.apply, attacker.public.x, attacker.public.features, lower=lower, upper=upper
            )
        if self.hessian is not None:
            matvec = _attacks.dense_matvec(self.hessian)
        else:
            matvec = attacker_hessian_matvec(sc, self.params, attacker)
        prior = _attacks.avg(
            attacker.public.x, attacker.public.labels, sc.model.task, sc.model.num_outputs
        )
        return AttackContext(sc, attacker, self.params, fmap, invert, prior, matvec)

    def apply(self, thetas_after: jax.Array, deleted: jax.Array) -> dict[str, AttackResult]:
        """{name: AttackResult [B]} for θ⁻ [B, ...] of the deletions `deleted` [B]; unjitted.

        A sharded release (SISA: θ⁺ [S, ...], θ⁻ [B, S, ...]) is attacked shard-wise: for each
        deletion the shard whose parameters changed, with the attacker's Ĥ of that shard."""
        if _shards(self.scenario, self.params):
            return jax.vmap(self._changed_shard)(thetas_after, deleted)
        ctx = self.context()
        return {
            name: ATTACKS[name].apply(ctx._replace(state=state), thetas_after, deleted)
            for name, state in zip(self.names, self.states, strict=True)
        }

    def apply_pairs(
        self, thetas_before: jax.Array, thetas_after: jax.Array, deleted: jax.Array, n_train
    ) -> dict[str, AttackResult]:
        """Attacks deletions that each have their own θ⁺ (a sequence of releases: the attacker
        differences consecutive models) and the attacker's own n at that time ([B]); the Ĥ of
        each is matrix-free at its θ⁺. Unjitted."""

        # Prepared Hessians belong to the first θ⁺; hrec-plus rebuilds its Ĥ at each one.
        states = tuple(
            dataclasses.replace(s, hessian=None, curvatures=None)
            if isinstance(s, HRecPlusState)
            else s
            for s in self.states
        )

        def lane(before, after, position, n):
            attacker = dataclasses.replace(self.attacker, n_train=n)
            single = dataclasses.replace(
                self, params=before, hessian=None, attacker=attacker, states=states
            )
            out = single.apply(after[None], position[None])
            return jax.tree.map(lambda a: a[0], out)

        return jax.vmap(lane)(thetas_before, thetas_after, deleted, jnp.asarray(n_train))

    def _changed_shard(self, theta_after, deleted):
        """The attacks on one deletion of a sharded release, on the shard that changed."""
        change = jnp.sum((theta_after - self.params) ** 2, axis=tuple(range(1, theta_after.ndim)))
        shard = jnp.argmax(change)
        single = dataclasses.replace(
            self,
            params=self.params[shard],
            hessian=None if self.hessian is None else self.hessian[shard],
        )
        out = single.apply(theta_after[shard][None], deleted[None])
        return jax.tree.map(lambda a: a[0], out)

    def __call__(self, thetas_after, deleted) -> dict[str, AttackResult]:
        return _attack_batch(self, jnp.asarray(thetas_after), as_deletions(deleted))


def make_attack(
    scenario: Scenario,
    params: jax.Array,
    names: Sequence[str] = DEFAULT_ATTACKS,
    attacker: Attacker | None = None,
    *,
    hessian: str = "auto",
    states: Mapping[str, Any] | None = None,
    records: int = 1,
) -> Attack:
    """The attacks `names` (keys of `ATTACKS`) on deletions from `scenario`'s model θ⁺.

    Prepares what the attacks share once: the attacker's Ĥ as a dense matrix when P <=
    DENSE_LIMIT (`hessian="auto"`; "dense" or "matrix-free" to force one), and each attack's
    `prepare` (Updates-Leak's shadow models and decoder) unless given in `states`.

    Args:
      scenario: the scenario.
      params: θ⁺.
      names: attacks to run, in order.
      attacker: the attacker's knowledge (default `scenario.attacker`, the truth).
      hessian: "auto", "dense" or "matrix-free".
      states: prepared states by attack name (`prepare_attack`), to reuse or time them apart.
      records: k, records per deletion request (k > 1: only attacks with `multi_record`).

    Raises:
      InputError: an unknown or repeated attack, a bad `hessian`, or an attack that reads one
        record per deletion with records > 1.
    """
    names = check_attack_names(names)
    _validate.integer("deletions_per_request", records, minimum=1)
    if records > 1:
        for name in names:
            if not ATTACKS[name].multi_record:
                raise _validate.fail(
                    "attacks", f"{name} reconstructs one record per deletion request"
                )
    _validate.choice("hessian", hessian, HESSIAN_MODES)
    attacker = scenario.attacker if attacker is None else attacker
    shards = _shards(scenario, params)
    if shards:
        if "informed" in names:
            raise _validate.fail("attacks", "the informed adversary of sharded (SISA) releases")
        # The attacker knows the shard layout: each shard model saw about n/S records.
        attacker = dataclasses.replace(attacker, n_train=attacker.n_train // shards)
    dense = hessian == "dense" or (hessian == "auto" and scenario.param_count <= DENSE_LIMIT)
    matrix = None
    if dense and any(ATTACKS[name].uses_hessian for name in names):
        form = _attacker_hessian_jit
        if shards:
            form = jax.jit(jax.vmap(attacker_hessian, in_axes=(None, 0, None)))
        matrix = form(scenario, params, attacker)
    states = dict(states or {})
    prepared = tuple(
        states[name] if name in states else prepare_attack(scenario, params, name, attacker)
        for name in names
    )
    return Attack(scenario, attacker, params, matrix, prepared, names)


def _shards(scenario: Scenario, params: jax.Array) -> int:
    """S for a sharded release θ⁺ [S, ...] (one more axis than the model's), else 0."""
    extra = params.ndim - len(scenario.model.param_shape(1))
    return params.shape[0] if extra == 1 else 0


def check_attack_names(names: Sequence[str]) -> tuple[str, ...]:
    """`names` as a tuple, checked: at least one, each in `ATTACKS`, none twice.

    Raises:
      InputError: naming the argument `attacks` and the bad value.
    """
    names = tuple(names)
    if not names:
        raise _validate.fail("attacks", "give at least one attack")
    for name in names:
        _validate.choice("attacks", name, ATTACKS)
    if len(set(names)) != len(names):
        raise _validate.fail("attacks", f"duplicate attack in {','.join(names)!r}")
    return names


def prepare_attack(
    scenario: Scenario,
    params: jax.Array,
    name: str,
    attacker: Attacker | None = None,
    **options: Any,
) -> Any:
    """The prepared state of attack `name` (None when it needs none), e.g. Updates-Leak's.

    Args:
      scenario: the scenario.
      params: θ⁺.
      name: a key of `ATTACKS`.
      attacker: the attacker's knowledge (default `scenario.attacker`, the truth).
      **options: keyword options of the attack's `prepare`, e.g. Updates-Leak's `probes`,
        `shadows` and `deletions_per_shadow` (defaults `UPDATES_LEAK_*`).

    Raises:
      InputError: an unknown attack, an option the attack does not take, or a bad value.
    """
    _validate.choice("attacks", name, ATTACKS)
    spec = ATTACKS[name]
    allowed = _prepare_options(spec.prepare)
    for option in options:
        if option not in allowed:
            choices = ", ".join(allowed) or "none"
            raise _validate.fail(option, f"not an option of attack {name!r}; options: {choices}")
    if spec.prepare is None:
        return None
    attacker = scenario.attacker if attacker is None else attacker
    return spec.prepare(scenario, attacker, params, subkey(scenario.key, "attack"), **options)


def _prepare_options(prepare: Callable[..., Any] | None) -> tuple[str, ...]:
    """The keyword-only options of an attack's `prepare` (none without one)."""
    if prepare is None:
        return ()
    parameters = inspect.signature(prepare).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def attacker_hessian_matvec(
    scenario: Scenario, params: jax.Array, attacker: Attacker | None = None
) -> Callable[[jax.Array], jax.Array]:
    """v -> Ĥv, Ĥ = ((n−1)/m) Σ_pub ∇²ℓ(θ⁺; p_k) + l2·I with the attacker's n, l2, public data."""
    features, beliefs = _hessian_inputs(scenario, attacker)
    return _attacks.public_hessian_matvec(scenario.model, params, features, **beliefs)


def attacker_hessian(
    scenario: Scenario, params: jax.Array, attacker: Attacker | None = None
) -> jax.Array:
    """Ĥ of `attacker_hessian_matvec` as a dense [P, P] matrix (moderate P only)."""
    features, beliefs = _hessian_inputs(scenario, attacker)
    return _attacks.public_hessian_matrix(scenario.model, params, features, **beliefs)


def _hessian_inputs(scenario: Scenario, attacker: Attacker | None):
    """The attacker's public features, and its n, l2 and (where the Hessian needs them) labels."""
    attacker = scenario.attacker if attacker is None else attacker
    labels = attacker.public.labels if scenario.model.hessian_uses_labels else None
    beliefs = {"n_train": attacker.n_train, "l2": attacker.l2, "public_labels": labels}
    return attacker.public.features, beliefs


def attacker_hessian_extremes(
    scenario: Scenario, params: jax.Array, attacker: Attacker | None = None
) -> tuple[float, float]:
    """Smallest and largest eigenvalue of the attacker's Ĥ (its condition number shows how much
    HRec amplifies estimation noise); exact up to 2,048 parameters, power iterations beyond."""

    def extremes(sc, theta, atk):
        return _attacks.hessian_extreme_eigenvalues(attacker_hessian_matvec(sc, theta, atk), theta)

    lo, hi = jax.jit(extremes)(
        scenario, params, scenario.attacker if attacker is None else attacker
    )
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# Scores.


class Matched(NamedTuple):
    """Per-record results of multi-record requests, matched to the deleted records.

    Attributes:
      results: {attack: AttackResult [B·k, ...]}, slot j of request b answering its j-th record.
      deleted: [B·k] the records' training positions.
      request: [B·k] each record's request.
    """

    results: dict[str, AttackResult]
    deleted: np.ndarray
    request: np.ndarray


def match_records(scenario: Scenario, results: Mapping[str, AttackResult], deleted) -> Matched:
    """Matches each request's k reconstructions to its k deleted records (the assignment that
    maximises the total cosine similarity, `scipy.optimize.linear_sum_assignment`), one attack
    at a time, and flattens requests to records. Host-side NumPy."""
    from scipy.optimize import linear_sum_assignment

    deleted = np.asarray(deleted)
    count, k = deleted.shape
    truth = np.asarray(scenario.train.x)[deleted]  # [B, k, d]
    matched = {}
    for name, result in results.items():
        x_hat = np.asarray(result.x_hat)
        cos = np.asarray(_metrics.cosine_similarity(x_hat[:, :, None, :], truth[:, None, :, :]))
        order = np.empty((count, k), np.int64)  # record j of request b <- slot order[b, j]
        for b in range(count):
            slots, records = linear_sum_assignment(-cos[b])
            order[b, records] = slots
        matched[name] = AttackResult(*(_by_slot(a, order) for a in result))
    return Matched(matched, deleted.reshape(-1), np.repeat(np.arange(count), k))


def _by_slot(values, order: np.ndarray) -> np.ndarray:
    """values [B, k, ...] reordered by `order` [B, k] along the slots, flattened to [B·k, ...]."""
    values = np.asarray(values)
    index = order.reshape(order.shape + (1,) * (values.ndim - 2))
    picked = np.take_along_axis(values, index, axis=1)
    return picked.reshape((-1,) + values.shape[2:])


class Scores(NamedTuple):
    """One attack's scores per deletion (DESIGN §3.7), all [B].

    Attributes:
      cosine: cos(x̂, x) in input space.
      mse: mean squared error in input space.
      label_correct: ŷ == y (classifiers), else None.
      label_error: |ŷ − y| (regression), else None.
      no_signal: the deletion left no trace and the attack answered its prior (attacks whose
        score means that: HRec, informed), else None.
      reid_rank: the deleted record's rank among the training set and the public pool by cosine
        to the reconstruction (1 = singled out; `metrics.reid_rank`), or None.
    """

    cosine: jax.Array
    mse: jax.Array
    label_correct: jax.Array | None
    label_error: jax.Array | None
    no_signal: jax.Array | None
    reid_rank: jax.Array | None = None


def score(scenario: Scenario, results: Mapping[str, AttackResult], deleted) -> dict[str, Scores]:
    """Scores of each attack's reconstructions of the records at `deleted` ([B] positions),
    with the re-identification rank among the training set followed by the public pool."""
    deleted = np.asarray(deleted)
    x_true = scenario.train.x[deleted]
    y_true = scenario.train.labels[deleted]
    regression = scenario.model.task == REGRESSION
    candidates = jnp.concatenate([scenario.train.x, scenario.public.x])
    out = {}
    for name, result in results.items():
        y_hat = jnp.asarray(result.y_hat)
        spec = ATTACKS.get(name)
        out[name] = Scores(
            cosine=_metrics.cosine_similarity(jnp.asarray(result.x_hat), x_true),
            mse=_metrics.mse(jnp.asarray(result.x_hat), x_true),
            label_correct=None if regression else y_hat == y_true,
            label_error=jnp.abs(y_hat - y_true) if regression else None,
            no_signal=jnp.asarray(result.score) == 0 if spec and spec.no_signal else None,
            reid_rank=_reid_rank_jit(jnp.asarray(result.x_hat), candidates, jnp.asarray(deleted)),
        )
    return out


def summarize(scores: Mapping[str, Scores]) -> dict[str, dict[str, Any]]:
    """Per attack: cosine median / p10 / mean, mean MSE, label accuracy (None for regression),
    `reidentification` (the share of deletions whose reconstruction's nearest candidate is the
    deleted record), and where they apply `no_signal` (a count) and `label_mae` (summary.json
    `attacks`)."""
    out = {}
    for name, s in scores.items():
        row = _metrics.summarize(np.asarray(s.cosine)) | {
            "mse_mean": float(np.mean(np.asarray(s.mse))),
            "label_accuracy": None
            if s.label_correct is None
            else float(np.mean(np.asarray(s.label_correct))),
        }
        if s.reid_rank is not None:
            row["reidentification"] = float(np.mean(np.asarray(s.reid_rank) == 1))
        if s.no_signal is not None:
            row["no_signal"] = int(np.sum(np.asarray(s.no_signal)))
        if s.label_error is not None:
            row["label_mae"] = float(np.mean(np.asarray(s.label_error)))
        out[name] = row
    return out


def _run_attack(attack: Attack, thetas_after: jax.Array, deleted: jax.Array):
    return attack.apply(thetas_after, deleted)


# The outermost jit of the convenience calls, and of the shared set-up steps.
_attack_batch = jax.jit(_run_attack)
_attacker_hessian_jit = jax.jit(attacker_hessian)
_reid_rank_jit = jax.jit(_metrics.reid_rank)
_shadow_updates_jit = jax.jit(
    _shadow.shadow_updates,
    static_argnames=("model", "num_shadow", "shadow_size", "deletions_per_shadow", "linear_solver"),
)
