"""The main job: config -> scenario -> train -> unlearn and attack every deletion -> report.

`run(config)` composes the library (`scenario`) exactly as a notebook would, and adds what a long
job needs: the deletions are processed in fixed-size chunks by ONE compiled function per stage
(the last chunk is padded, so no deletion recompiles anything and memory stays bounded), each
chunk sharded over the local devices, and every finished chunk saved atomically (`store`) so an
interrupted run resumes where it stopped. `report.write_outputs(result, out_dir)` writes the files.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

try:  # jax >= 0.7
    from jax import shard_map as _shard_map
except ImportError:  # pragma: no cover - older jax
    from jax.experimental.shard_map import shard_map as _shard_map

from jaxrecon import _validate
from jaxrecon import data as _data
from jaxrecon import reconstruction as _reconstruction
from jaxrecon import report as _report
from jaxrecon import scenario as _scenario
from jaxrecon import unlearners as _unlearners
from jaxrecon.attacks import AttackResult
from jaxrecon.config import RunConfig
from jaxrecon.errors import InputError, NumericalError
from jaxrecon.report import Outcome, RunResult
from jaxrecon.store import ChunkStore
from jaxrecon.unlearning import UnlearnResult


def run(
    config: RunConfig,
    *,
    progress: bool = True,
    checkpoint_dir: str | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Runs the whole job for `config` and returns the results.

    Args:
      config: the run's options.
      progress: show a progress bar over the chunks of deletions.
      checkpoint_dir: if given, every finished chunk of deletions is saved there atomically
        (`chunks/chunk-<k>.npz`, tagged with the config hash) and chunks already saved by an
        earlier, interrupted run of the same config are loaded instead of recomputed. Nothing
        is written before the data, the options and training have passed their checks.
      overwrite: let `checkpoint_dir` replace a run with a different config.

    Raises:
      InputError: a bad option or data set (the message names it).
      NumericalError: a solve returned non-finite values (the message names the deletion).
    """
    config.validate()
    mesh = deletion_mesh(config.devices)
    sc = scenario_of(config)
    attacker = attacker_of(config, sc)
    timer = _Timer()
    with timer("train"):  # θ⁺ on all n training records
        fit = jax.block_until_ready(jax.jit(_scenario.fit)(sc))
    _check_trained(fit, config)
    deleted = _scenario.draw_deletions(sc, config.deletions, config.deletions_per_request)
    unlearner, attack = _prepare(config, sc, fit.params, attacker, timer)
    store = None
    if checkpoint_dir is not None:
        store = ChunkStore.open(checkpoint_dir, config, overwrite=overwrite)
    run_chunks = _run_sequence if config.sequential else _run_chunks
    out, chunks = run_chunks(config, mesh, unlearner, attack, deleted, store, timer, progress)
    results = {
        name: AttackResult(out[f"x_{name}"], out[f"y_{name}"], out[f"score_{name}"])
        for name in config.attacks
    }
    unlearned = UnlearnResult(
        out["theta_after"],
        out["grad_norm"],
        out["steps"],
        exact_distance=out["exact_distance"],
        residual_bound=out.get("residual_bound"),
    )
    request = None
    if deleted.ndim == 2:  # k records per request: match each reconstruction to its record
        matched = _reconstruction.match_records(sc, results, deleted)
        results, deleted, request = matched.results, matched.deleted, matched.request
    scores = _reconstruction.score(sc, results, deleted)
    outcome = Outcome(deleted, unlearned, results, scores, out.get("fisher_bound"), request)
    summary = _report.summary(
        config, sc, fit, unlearner, outcome, timer.totals(), chunks, attacker=attacker
    )
    return RunResult(
        summary,
        _report.deletion_rows(sc, outcome),
        _report.run_arrays(sc, unlearner.released, outcome),
        _report.grid(sc, outcome),
        sc.info.dataset.image_shape,
    )


def scenario_of(config: RunConfig) -> _scenario.Scenario:
    """The scenario a run of `config` attacks: its data set loaded and split into roles, the
    feature map drawn, the truthful attacker (all from `config.seed`)."""
    key = jax.random.key(config.seed)
    dataset = _data.load_dataset(
        config.dataset,
        key=_scenario.subkey(key, "data"),
        data_dir=config.data_dir,
        download=config.download,
    )
    return _scenario.make_scenario(
        dataset,
        model=config.model,
        key=key,
        n_train=config.n_train,
        n_public=config.n_public,
        l2=config.l2,
        features=config.features,
        rff_dim=config.rff_dim,
        rff_bandwidth=config.rff_bandwidth,
        dtype=config.dtype,
    )


def attacker_of(config: RunConfig, sc: _scenario.Scenario) -> _scenario.Attacker:
    """The attacker of a run of `config` on `sc` (DESIGN §2): the n and l2 it believes
    (`assumed_n`, `assumed_l2`; None = the truth), its public data under `public_shift`
    (`scenario.shifted_public`, drawn with the scenario's "public" key; a "dataset:" shift loads
    that data set like `scenario_of`), and whether it knows the deleted record's label."""
    kind, name = _scenario.parse_public_shift(config.public_shift)
    other = None
    if kind == "dataset":
        try:
            other = _data.load_dataset(
                name,
                key=_scenario.subkey(sc.key, "data"),
                data_dir=config.data_dir,
                download=config.download,
            )
        except InputError as err:
            raise _validate.fail("public_shift", f"{config.public_shift!r}: {err}") from None
    public = _scenario.shifted_public(
        sc, config.public_shift, key=_scenario.subkey(sc.key, "public"), dataset=other
    )
    return _scenario.make_attacker(
        sc,
        n_train=config.assumed_n,
        l2=config.assumed_l2,
        public=public,
        label_known=config.label_known,
    )


def _prepare(config: RunConfig, sc, theta, attacker, timer):
    """The `Unlearner` and the `Attack` of the run, with what every deletion shares: each
    attack's own preparation (Updates-Leak's shadow models; timed as attack time and apart, as
    `<name>_shadow`), then the unlearning system and the attacker's Ĥ (timed as setup)."""
    options = _unlearners.method_options(
        config.unlearning,
        records=config.deletions_per_request,
        steps=config.unlearn_steps,
        lr=config.unlearn_lr,
        shards=config.shards,
    )
    with timer("setup"):
        unlearner = _unlearners.make_unlearn(
            sc,
            theta,
            config.unlearning,
            defense=config.defense,
            epsilon=config.epsilon,
            delta=config.delta,
            **options,
        )
        jax.block_until_ready(unlearner)
    theta = unlearner.released  # what the attacker sees before the deletion
    states = {}
    for name in config.attacks:
        if _reconstruction.ATTACKS[name].prepare is not None:
            with timer("attack"), timer(f"{name.replace('-', '_')}_shadow"):
                state = _reconstruction.prepare_attack(sc, theta, name, attacker)
                states[name] = jax.block_until_ready(state)
    with timer("setup"):
        attack = _reconstruction.make_attack(
            sc,
            theta,
            config.attacks,
            attacker,
            states=states,
            records=config.deletions_per_request,
        )
        jax.block_until_ready(attack)
    return unlearner, attack


def _run_chunks(config, mesh, unlearner, attack, deleted, store, timer, progress):
    """Unlearns and attacks `deleted` chunk by chunk, each chunk sharded over `mesh`; returns the
    concatenated outputs and the chunk counts (size, computed, reused)."""
    unlearn_fn, attack_fn = _chunk_functions(mesh)
    fisher = jax.jit(_unlearners.fisher_bounds) if _unlearners.fisher_applies(unlearner) else None
    replicated = NamedSharding(mesh, PartitionSpec())
    unlearner, attack = jax.device_put((unlearner, attack), replicated)
    by_deletion = NamedSharding(mesh, PartitionSpec("deletions"))
    # Every device gets the same share of each chunk: round the chunk up to a multiple.
    chunk = -(-min(config.chunk_size, config.deletions) // mesh.size) * mesh.size
    starts = range(0, config.deletions, chunk)
    outputs: dict[str, list[np.ndarray]] = {}
    reused = 0
    for number, start in enumerate(_progress(starts, config, progress)):
        idx = deleted[start : start + chunk]
        saved = None if store is None else store.load(number, idx)
        reused += saved is not None
        if saved is None:
            padded = np.concatenate([idx, np.repeat(idx[-1:], chunk - len(idx), axis=0)])
            padded = jax.device_put(padded, by_deletion)
            with timer("unlearn"):
                unlearned = jax.block_until_ready(unlearn_fn(unlearner, padded))
            _check_finite(unlearned, idx, unlearner.scenario.info.roles.train)
            with timer("attack"):
                recon = jax.block_until_ready(attack_fn(attack, unlearned.params, padded))
                bounds = (
                    None if fisher is None else jax.block_until_ready(fisher(unlearner, padded))
                )
            saved = _chunk_arrays(idx, unlearned, recon, bounds)
            if store is not None:
                store.save(number, saved)
        for k, v in saved.items():
            outputs.setdefault(k, []).append(v)
    counts = {"size": chunk, "computed": len(starts) - reused, "reused": reused}
    return {k: np.concatenate(v) for k, v in outputs.items()}, counts


def _run_sequence(config, mesh, unlearner, attack, deleted, store, timer, progress):
    """The sequential variant of `_run_chunks`: consecutive stretches of the sequence, each
    continuing from the previous one's model and retained records (saved with the chunk, so a
    resumed run continues exactly); each release attacked against the one before it. One
    device (the sequence is inherently serial)."""
    del mesh
    sequence = jax.jit(_unlearners.unlearn_sequence)
    pairs = jax.jit(lambda a, before, after, d, n: a.apply_pairs(before, after, d, n))
    believed = int(attack.attacker.n_train)
    carry = published = None
    outputs: dict[str, list[np.ndarray]] = {}
    reused = 0
    starts = range(0, len(deleted), config.chunk_size)
    for number, start in enumerate(_progress(starts, config, progress)):
        idx = deleted[start : start + config.chunk_size]
        saved = None if store is None else store.load(number, idx)
        reused += saved is not None
        if saved is None:
            with timer("unlearn"):
                seq = jax.block_until_ready(sequence(unlearner, idx, carry, published))
            unlearned = UnlearnResult(
                seq.after, seq.grad_norm, seq.steps, exact_distance=seq.exact_distance
            )
            _check_finite(unlearned, idx, unlearner.scenario.info.roles.train)
            n_before = believed - np.arange(start, start + len(idx))
            with timer("attack"):
                recon = pairs(attack, seq.before, seq.after, idx, n_before)
                recon = jax.block_until_ready(recon)
            saved = _chunk_arrays(idx, unlearned, recon)
            saved |= {"carry_theta": np.asarray(seq.carry[0]), "carry_weights": seq.carry[1]}
            if store is not None:
                store.save(number, saved)
        saved = dict(saved)
        carry = (saved.pop("carry_theta"), saved.pop("carry_weights"))
        published = saved["theta_after"][-1]
        for k, v in saved.items():
            outputs.setdefault(k, []).append(v)
    counts = {"size": config.chunk_size, "computed": len(starts) - reused, "reused": reused}
    return {k: np.concatenate(v) for k, v in outputs.items()}, counts


def _progress(starts, config: RunConfig, progress: bool):
    """`starts`, behind a progress bar when asked."""
    if not progress:
        return starts
    from tqdm.auto import tqdm

    desc = f"unlearn+attack ({config.deletions} deletions)"
    return tqdm(starts, desc=desc, unit="chunk", leave=False)


def _chunk_arrays(idx, unlearned: UnlearnResult, recon, fisher=None) -> dict[str, np.ndarray]:
    """A chunk's outputs as host arrays, the padding dropped (the chunk file's contents)."""
    arrays = {
        "deleted": idx,
        "theta_after": unlearned.params,
        "grad_norm": unlearned.grad_norm,
        "steps": unlearned.steps,
        "exact_distance": unlearned.exact_distance,
    }
    if unlearned.residual_bound is not None:
        arrays["residual_bound"] = unlearned.residual_bound
    if fisher is not None:
        arrays["fisher_bound"] = fisher
    for name, result in recon.items():
        arrays[f"x_{name}"] = result.x_hat
        arrays[f"y_{name}"] = result.y_hat
        arrays[f"score_{name}"] = result.score
    return {k: np.asarray(v)[: len(idx)] for k, v in arrays.items()}


def _unlearn_chunk(unlearner: _unlearners.Unlearner, deleted):
    return unlearner.apply(deleted)


def _attack_chunk(attack: _reconstruction.Attack, thetas_after, deleted):
    return attack.apply(thetas_after, deleted)


def _chunk_functions(mesh: Mesh) -> tuple[Callable, Callable]:
    """The two compiled functions of a run: unlearn a chunk, attack a chunk. Under several
    devices each runs per device on its share of the chunk (`shard_map`), the shared arrays
    replicated: kernels that compact their own lanes (chord) need that, and the rest lose
    nothing by it."""
    if mesh.size == 1:
        return jax.jit(_unlearn_chunk), jax.jit(_attack_chunk)
    lanes, shared = PartitionSpec("deletions"), PartitionSpec()
    unlearn = _shard_map(_unlearn_chunk, mesh=mesh, in_specs=(shared, lanes), out_specs=lanes)
    attack = _shard_map(_attack_chunk, mesh=mesh, in_specs=(shared, lanes, lanes), out_specs=lanes)
    return jax.jit(unlearn), jax.jit(attack)


def deletion_mesh(devices: int | None) -> Mesh:
    """A 1-D mesh over the first `devices` local devices, its axis named "deletions"."""
    available = jax.local_devices()
    count = len(available) if devices is None else devices
    if count > len(available):
        raise _validate.fail(
            "devices",
            f"{count} requested but only {len(available)} local {available[0].platform} "
            "device(s) are visible",
        )
    return Mesh(np.asarray(available[:count]), ("deletions",))


def _check_trained(fit, config: RunConfig) -> None:
    if not bool(np.all(np.isfinite(np.asarray(fit.params)))):
        raise _validate.fail(
            "l2",
            f"training produced non-finite parameters (l2 {config.l2}, dtype {config.dtype}); "
            "the data may contain non-finite values",
        )


def _check_finite(unlearned, deleted: np.ndarray, train_index: np.ndarray) -> None:
    """Raises NumericalError naming the first deletion whose unlearned model is not finite."""
    params = np.asarray(unlearned.params)[: len(deleted)]
    bad = ~np.all(np.isfinite(params.reshape(len(deleted), -1)), axis=1)
    bad |= ~np.isfinite(np.asarray(unlearned.grad_norm)[: len(deleted)])
    if bad.any():
        first = int(np.atleast_1d(deleted[int(np.flatnonzero(bad)[0])])[0])
        raise NumericalError(
            f"unlearning deletion train_index {first} (pool index {int(train_index[first])}) "
            f"returned non-finite parameters; {int(bad.sum())} deletion(s) of this chunk "
            "affected (try a larger --l2 or --dtype float64)"
        )


class _Timer:
    """Wall-clock seconds per stage, summed over the stage's blocks."""

    def __init__(self):
        self._totals: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._totals[stage] = self._totals.get(stage, 0.0) + time.perf_counter() - start

    def totals(self) -> dict[str, float]:
        """The four stages of summary.json `timing_s` (0 when skipped), then any others."""
        stages = {stage: 0.0 for stage in ("train", "setup", "unlearn", "attack")}
        return stages | self._totals
