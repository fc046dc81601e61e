"""The main job: config -> scenario -> train -> unlearn and attack every deletion -> report.

`run(config)` composes the library (`scenario`) exactly as a notebook would, and adds what a long
job needs: the deletions are processed in fixed-size chunks by ONE compiled function per stage
(the last chunk is padded, so no deletion recompiles anything and memory stays bounded), each
chunk sharded over the local devices, and every finished chunk saved atomically (`store`) so an
interrupted run resumes where it stopped. `report.write_outputs(result, out_dir)` writes the files.

Several processes (after `jax.distributed.initialize`, e.g. one per host) share one run: each
trains θ⁺ and prepares the shared systems itself (deterministic, so identical everywhere), owns the
chunks whose number is its process index modulo the process count, computes them on its own
devices and saves them into the shared checkpoint folder; after a barrier process 0 loads every
chunk and alone returns the result. The only cross-process communication is a few tiny
all-gathers (`multihost_utils.process_allgather`), which double as barriers and carry each
process's failure flag, so one process's error stops every process instead of hanging them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils
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
from jaxrecon.config import RunConfig, config_hash
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
) -> RunResult | None:
    """Runs the whole job for `config` and returns the results.

    Under several JAX processes (`jax.process_count() > 1`) every process must call this with
    the same arguments: each computes its own chunks (see the module docstring) into
    `checkpoint_dir`, which every process must see (a shared file system), and process 0
    returns the result of the whole run; the other processes return None.

    Args:
      config: the run's options.
      progress: show a progress bar over the chunks of deletions (process 0 only).
      checkpoint_dir: if given, every finished chunk of deletions is saved there atomically
        (`chunks/chunk-<k>.npz`, tagged with the config hash) and chunks already saved by an
        earlier, interrupted run of the same config are loaded instead of recomputed. Nothing
        is written before the data, the options and training have passed their checks.
        Required with several processes.
      overwrite: let `checkpoint_dir` replace a run with a different config.

    Returns:
      The run's results; None on a process other than process 0.

    Raises:
      InputError: a bad option or data set (the message names it), or, under several
        processes, another process failed (its own error is on its stderr).
      NumericalError: a solve returned non-finite values (the message names the deletion).
    """
    config.validate()
    if jax.process_count() > 1 and checkpoint_dir is None:
        raise _validate.fail(
            "checkpoint_dir",
            f"a run over {jax.process_count()} processes needs a folder all of them share",
        )
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
        store = _open_store(checkpoint_dir, config, overwrite)
    out, chunks = _deletions(config, mesh, unlearner, attack, deleted, store, timer, progress)
    if out is None:  # not process 0, which reports the run
        return None
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


def _deletions(config, mesh, unlearner, attack, deleted, store, timer, progress):
    """Every chunk of `deleted` unlearned and attacked: this process's own chunks computed (or
    loaded when saved), then, on process 0 once every process finished, the others' chunks read
    back from `store`. Returns the concatenated outputs and the chunk counts (size, computed,
    reused, and with several processes their number); (None, None) on the other processes."""
    size = _chunk_size(config, mesh)
    compute = _run_sequence if config.sequential else _run_chunks
    numbers = _owned_chunks(config, size)
    progress = progress and jax.process_index() == 0
    failure, done, counts = None, {}, {"computed": 0, "reused": 0}
    try:
        done, counts = compute(
            config, mesh, unlearner, attack, deleted, store, timer, progress, size, numbers
        )
    except Exception as err:  # noqa: BLE001 - re-raised once the other processes know
        failure = err
    counts = _synchronise(failure, counts, timer)
    if jax.process_index() != 0:
        return None, None
    processes = jax.process_count()
    counts |= {"processes": processes} if processes > 1 else {}
    return _collect(done, deleted, size, store), {"size": size} | counts


def _run_chunks(config, mesh, unlearner, attack, deleted, store, timer, progress, size, numbers):
    """Unlearns and attacks the chunks `numbers` of `deleted` (`size` deletions each), each
    sharded over `mesh`; returns their outputs by chunk number and the counts (computed,
    reused)."""
    unlearn_fn, attack_fn = _chunk_functions(mesh)
    fisher = jax.jit(_unlearners.fisher_bounds) if _unlearners.fisher_applies(unlearner) else None
    replicated = NamedSharding(mesh, PartitionSpec())
    unlearner, attack = jax.device_put((unlearner, attack), replicated)
    by_deletion = NamedSharding(mesh, PartitionSpec("deletions"))
    done: dict[int, dict[str, np.ndarray]] = {}
    reused = 0
    for number in _progress(numbers, config, progress):
        idx = deleted[number * size : (number + 1) * size]
        saved = None if store is None else store.load(number, idx)
        reused += saved is not None
        if saved is None:
            padded = np.concatenate([idx, np.repeat(idx[-1:], size - len(idx), axis=0)])
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
        if jax.process_index() == 0:  # the others' chunks are read back by process 0
            done[number] = saved
    return done, {"computed": len(numbers) - reused, "reused": reused}


def _run_sequence(config, mesh, unlearner, attack, deleted, store, timer, progress, size, numbers):
    """The sequential variant of `_run_chunks`: consecutive stretches of the sequence, each
    continuing from the previous one's model and retained records (saved with the chunk, so a
    resumed run continues exactly); each release attacked against the one before it. One
    device of one process (the sequence is inherently serial): `numbers` is every chunk or
    none."""
    del mesh
    sequence = jax.jit(_unlearners.unlearn_sequence)
    pairs = jax.jit(lambda a, before, after, d, n: a.apply_pairs(before, after, d, n))
    believed = int(attack.attacker.n_train)
    carry = published = None
    done: dict[int, dict[str, np.ndarray]] = {}
    reused = 0
    for number in _progress(numbers, config, progress):
        start = number * size
        idx = deleted[start : start + size]
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
        done[number] = saved
    return done, {"computed": len(numbers) - reused, "reused": reused}


def _chunk_size(config: RunConfig, mesh: Mesh) -> int:
    """Deletions per chunk: `chunk_size`, rounded up so every device of every process gets the
    same share (a multiple of each process's mesh size; sequential runs: unrounded)."""
    if config.sequential:
        return config.chunk_size
    sizes = [mesh.size]
    if jax.process_count() > 1:
        sizes = [int(n) for n in multihost_utils.process_allgather(np.int32(mesh.size))]
    multiple = math.lcm(*sizes)
    return -(-min(config.chunk_size, config.deletions) // multiple) * multiple


def _owned_chunks(config: RunConfig, size: int) -> list[int]:
    """The chunk numbers this process computes: number % process_count == process_index
    (sequential runs: all of them on process 0)."""
    total = -(-config.deletions // size)
    process, processes = jax.process_index(), jax.process_count()
    if config.sequential:
        return list(range(total)) if process == 0 else []
    return list(range(process, total, processes))


def _open_store(out_dir: str, config: RunConfig, overwrite: bool) -> ChunkStore:
    """`ChunkStore.open` on process 0 (it alone claims and cleans `out_dir`); the other processes
    wait for it, then use the same folder."""
    if jax.process_count() == 1:
        return ChunkStore.open(out_dir, config, overwrite=overwrite)
    store, failure = None, None
    if jax.process_index() == 0:
        try:
            store = ChunkStore.open(out_dir, config, overwrite=overwrite)
        except Exception as err:  # noqa: BLE001 - re-raised by _synchronise
            failure = err
    _synchronise(failure)
    return store or ChunkStore(out_dir, config_hash(config))


def _synchronise(
    failure: BaseException | None, counts: dict[str, int] | None = None, timer=None
) -> dict[str, int] | None:
    """Waits for every process; raises `failure`, or InputError when another process failed.

    With `counts`, returns them summed over the processes, and sets `timer`'s unlearn and attack
    seconds to the slowest process's.
    """
    if jax.process_count() == 1:
        if failure is not None:
            raise failure
        return counts
    counts = counts or {}
    seconds = timer.totals() if timer is not None else {}
    mine = [failure is not None, counts.get("computed", 0), counts.get("reused", 0)]
    mine += [seconds.get("unlearn", 0.0), seconds.get("attack", 0.0)]
    table = np.asarray(multihost_utils.process_allgather(np.asarray(mine, np.float32)))
    if failure is not None:
        raise failure
    failed = np.flatnonzero(table[:, 0])
    if failed.size:
        raise InputError(
            f"process {int(failed[0])} of the run failed (its error is on its own stderr); "
            "rerun the same command to resume from the chunks already saved"
        )
    if timer is not None:
        timer.set("unlearn", float(table[:, 3].max()))
        timer.set("attack", float(table[:, 4].max()))
    return {"computed": int(table[:, 1].sum()), "reused": int(table[:, 2].sum())}


def _collect(done, deleted, size: int, store: ChunkStore | None) -> dict[str, np.ndarray]:
    """Every chunk's outputs concatenated in order: those in `done`, the others (computed by
    other processes) loaded from `store`."""
    outputs: dict[str, list[np.ndarray]] = {}
    for number in range(-(-len(deleted) // size)):
        saved = done.get(number)
        if saved is None:
            idx = deleted[number * size : (number + 1) * size]
            saved = None if store is None else store.load(number, idx)
            if saved is None:
                raise _validate.fail(
                    "out",
                    f"chunk {number} computed by another process is missing or unreadable in "
                    f"{store.folder!r}; every process must write into the same folder (a shared "
                    "file system)",
                )
            saved = {k: v for k, v in saved.items() if not k.startswith("carry_")}
        for k, v in saved.items():
            outputs.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in outputs.items()}


def _progress(numbers, config: RunConfig, progress: bool):
    """The chunk `numbers`, behind a progress bar when asked."""
    if not progress:
        return numbers
    from tqdm.auto import tqdm

    desc = f"unlearn+attack ({config.deletions} deletions)"
    return tqdm(numbers, desc=desc, unit="chunk", leave=False)


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
    """A 1-D mesh over the first `devices` local devices, its axis named "deletions".

    Local, also under several processes: each process computes its own chunks on its own
    devices (`devices` then counts the devices of each process)."""
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

    def set(self, stage: str, seconds: float) -> None:
        """Replaces the seconds of `stage` (another process's clock, for example)."""
        self._totals[stage] = seconds

    def totals(self) -> dict[str, float]:
        """The four stages of summary.json `timing_s` (0 when skipped), then any others."""
        stages = {stage: 0.0 for stage in ("train", "setup", "unlearn", "attack")}
        return stages | self._totals
