"""Command line: `jaxrecon run ...`, `jaxrecon audit ...` and `jaxrecon datasets` (see the
README's CLI reference).

Bad input prints one line `jaxrecon: error: <option>: <what is wrong>` on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from jaxrecon.errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str):  # noqa: D102
        sys.stderr.write(f"jaxrecon: error: {message} (see jaxrecon {self._sub_name()} --help)\n")
        sys.exit(2)

    def _sub_name(self) -> str:
        parts = self.prog.split()
        return parts[-1] if len(parts) > 1 else ""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `jaxrecon` command."""
    from jaxrecon import config, data, models, reconstruction, unlearners

    defaults = config.RunConfig()
    parser = _Parser(
        prog="jaxrecon",
        description=(
            "Reconstruct deleted training records from a model's parameters before and after "
            "unlearning (HRec), beside the Avg and MaxDiff baselines."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="train, delete, unlearn, attack, and write the results",
        description="Train a model, delete samples, unlearn them, attack every "
        "deletion and write summary.json, deletions.csv and figures to --out.",
    )
    run.add_argument(
        "--dataset",
        default=defaults.dataset,
        help=f"data set: {', '.join(s.usage for s in data.DATASETS.values())} "
        "(default: %(default)s; `jaxrecon datasets` says which are available)",
    )
    run.add_argument(
        "--model",
        default=defaults.model,
        help=f"model family: {'|'.join(models.MODELS)} (default: %(default)s)",
    )
    run.add_argument(
        "--unlearning",
        default=defaults.unlearning,
        help=f"unlearning method: {'|'.join(unlearners.UNLEARNING)} (default: %(default)s)",
    )
    run.add_argument(
        "--attacks",
        default=",".join(defaults.attacks),
        help=f"comma-separated attacks from {','.join(reconstruction.ATTACKS)} "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--n-train",
        type=int,
        default=defaults.n_train,
        help="training-set size (default: %(default)s)",
    )
    run.add_argument(
        "--n-public",
        type=int,
        default=None,
        help="attacker's public samples (default: the rest of the pool minus the "
        "held-out test split)",
    )
    run.add_argument(
        "--deletions",
        type=int,
        default=defaults.deletions,
        help="number of single-sample deletions, drawn at random from the training "
        "set (default: %(default)s)",
    )
    run.add_argument(
        "--l2",
        type=float,
        default=defaults.l2,
        help="L2 regulariser lambda > 0 (default: %(default)s)",
    )
    run.add_argument("--seed", type=int, default=defaults.seed, help="seed (default: %(default)s)")
    run.add_argument(
        "--data-dir",
        default=None,
        help="folder with local data files; also the tensorflow-datasets data dir and the "
        "folktables data root",
    )
    run.add_argument(
        "--download",
        action="store_true",
        help="download a data set that has no local copy (tensorflow-datasets for "
        "mnist/fashion_mnist/cifar10, folktables for acs_income); off: never use the network",
    )
    run.add_argument(
        "--dtype",
        default=defaults.dtype,
        help=f"{'|'.join(config.DTYPES)} (default: %(default)s)",
    )
    run.add_argument(
        "--chunk-size",
        type=int,
        default=defaults.chunk_size,
        help="deletions per compiled batch (default: %(default)s)",
    )
    run.add_argument("--out", default=None, help="output folder (default: runs/<timestamp>)")
    run.add_argument(
        "--save-arrays",
        action="store_true",
        help="also write arrays.npz (features, parameters, reconstructions)",
    )
    run.add_argument(
        "--features",
        default=defaults.features,
        help=f"feature map: {'|'.join(config.FEATURES)} (default: %(default)s)",
    )
    run.add_argument(
        "--rff-dim",
        type=int,
        default=defaults.rff_dim,
        help="random Fourier features F for --features rff (default: %(default)s)",
    )
    run.add_argument(
        "--rff-bandwidth",
        type=float,
        default=None,
        help="RFF kernel bandwidth (default: median pairwise distance of the public inputs)",
    )
    run.add_argument(
        "--devices",
        type=int,
        default=None,
        help="shard the deletions over this many local devices (default: all)",
    )
    run.add_argument(
        "--defense",
        default=defaults.defense,
        help=f"{'|'.join(unlearners.DEFENSES)}: output-perturbation adds Gaussian noise "
        "calibrated for (--epsilon, --delta) to every released model (default: %(default)s)",
    )
    run.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="privacy target ε of --defense, certified and descent-to-delete (default: 1 for "
        "those methods)",
    )
    run.add_argument(
        "--delta",
        type=float,
        default=defaults.delta,
        help="privacy target δ (default: %(default)s)",
    )
    run.add_argument(
        "--unlearn-steps",
        type=int,
        default=None,
        help="steps of gradient-ascent, finetune and descent-to-delete (default: 10)",
    )
    run.add_argument(
        "--unlearn-lr",
        type=float,
        default=None,
        help="step size of gradient-ascent and finetune (default: 1/M, M the objective's "
        "smoothness bound)",
    )
    run.add_argument(
        "--shards",
        type=int,
        default=defaults.shards,
        help="SISA shards for --unlearning sisa (default: %(default)s)",
    )
    run.add_argument(
        "--deletions-per-request",
        type=int,
        default=defaults.deletions_per_request,
        help="training records removed together by each deletion request (default: %(default)s)",
    )
    run.add_argument(
        "--sequential",
        action="store_true",
        help="delete one record after another, publishing every intermediate model (exact "
        "and newton unlearning)",
    )
    _add_threat_model_flags(run, defaults)
    _add_distributed_flags(run)
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different run already in --out (default: refuse; the same config resumes)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")

    sweep = sub.add_parser(
        "sweep",
        help="run a grid of runs from a TOML/JSON file (resumable) and write sweep.csv",
        description="Run every combination of datasets x models x unlearning x seeds in GRID "
        "(a .toml or .json file; see jaxrecon.sweep), each into its own folder under --out, "
        "resuming finished runs and chunks, then write <out>/sweep.csv.",
    )
    sweep.add_argument("grid", help="grid file (.toml or .json)")
    sweep.add_argument("--out", required=True, help="output folder of the sweep")
    sweep.add_argument("--overwrite", action="store_true", help="replace runs with other configs")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    listing = sub.add_parser(
        "datasets",
        help="list every data set, where it looks for it and whether it is available",
        description="One line per data set: name, available (yes/no), where it looked, "
        "how to get it. Never uses the network.",
    )
    listing.add_argument(
        "--data-dir", default=None, help="folder to look in (as for `jaxrecon run`)"
    )
    _add_audit_parser(sub)
    return parser


def _add_threat_model_flags(run, defaults) -> None:
    """What the attacker knows (DESIGN §2): by default the truth, the public split, no label."""
    from jaxrecon import scenario

    knobs = run.add_argument_group("threat model (what the attacker knows)")
    knobs.add_argument(
        "--assumed-n",
        type=int,
        default=None,
        help="training-set size n the attacker believes, >= 2 (default: the true --n-train)",
    )
    knobs.add_argument(
        "--assumed-l2",
        type=float,
        default=None,
        help="regulariser the attacker believes, > 0 (default: the true --l2)",
    )
    knobs.add_argument(
        "--public-shift",
        default=defaults.public_shift,
        help=f"the attacker's public data: {'|'.join(scenario.PUBLIC_SHIFTS)}: the public "
        "split, another class balance (most frequent class R times the least), another data "
        "set of the same input shape, or Gaussian noise of std SIGMA (default: %(default)s)",
    )
    label = knobs.add_mutually_exclusive_group()
    label.add_argument(
        "--label-known",
        dest="label_known",
        action="store_true",
        default=defaults.label_known,
        help="the attacker knows the deleted record's label (gradmatch then tries only it, "
        "hrec-plus answers it)",
    )
    label.add_argument(
        "--label-unknown",
        dest="label_known",
        action="store_false",
        help="the attack may not use the label anywhere (the default; HRec recovers it)",
    )


def _add_distributed_flags(run) -> None:
    """One run over several JAX processes (hosts, or GPUs of one host): `jax.distributed`."""
    group = run.add_argument_group(
        "several processes (one run over several hosts; start the same command in each)"
    )
    group.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0's coordinator (jax.distributed.initialize); with "
        "--num-processes and --process-id",
    )
    group.add_argument(
        "--num-processes",
        type=int,
        default=None,
        metavar="N",
        help="number of processes of the run, >= 1",
    )
    group.add_argument(
        "--process-id",
        type=int,
        default=None,
        metavar="I",
        help="this process's index in [0, N); process 0 writes the summary and tables",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a run over several processes with the cluster's own settings (Slurm, "
        "Open MPI, Cloud TPU: jax.distributed.initialize() without arguments)",
    )


AUDIT_FILES = ("summary.json", "reconstructions.csv", "reconstructions.png", "reconstruction.npz")


def _add_audit_parser(sub) -> None:
    audit = sub.add_parser(
        "audit",
        help="attack released models: reconstruct the record deleted between two snapshots",
        description="Read a model released before a deletion and one or more released after "
        "(.skops scikit-learn, .npz / .safetensors arrays w and b, flax .msgpack; pickle only "
        "with --trust-pickle), reconstruct each deleted record with HRec from public data, and "
        "write summary.json, reconstructions.csv, reconstructions.png (images) and "
        "reconstruction.npz to --out.",
    )
    audit.add_argument("--before", required=True, help="the model before the deletion (θ⁺)")
    audit.add_argument(
        "--after",
        required=True,
        nargs="+",
        help="the model after a deletion (θ⁻); several files = several single deletions from "
        "--before (with --sequence: consecutive releases)",
    )
    audit.add_argument(
        "--public",
        required=True,
        help="public records: .npz with x [m, d] (the model's inputs; raw inputs with "
        "--features rff) and labels y [m]",
    )
    audit.add_argument(
        "--model-family",
        "--model",
        dest="model_family",
        default=None,
        help="model family, for files that do not record it",
    )
    audit.add_argument(
        "--n",
        "--n-train",
        dest="n",
        type=int,
        default=None,
        help="training-set size n of --before (default: the snapshot's, else estimated)",
    )
    audit.add_argument(
        "--l2",
        type=float,
        default=None,
        help="regulariser on the weights in jaxrecon's units (default: the snapshot's, e.g. "
        "1/C, else estimated)",
    )
    audit.add_argument(
        "--features",
        default="identity",
        help="identity|rff: θ over [x, 1], or over random Fourier features of x (default: "
        "%(default)s)",
    )
    audit.add_argument(
        "--rff-params",
        default=None,
        help="with --features rff: .npz with the RFF draw, weights [F, d] and phases [F]",
    )
    audit.add_argument(
        "--truth",
        "--deleted",
        dest="truth",
        default=None,
        help="the deleted records, .npz with x [B, d] (and y [B]), one per deletion: score "
        "every attack against them",
    )
    audit.add_argument(
        "--sequence",
        action="store_true",
        help="--before, --after A1 A2 ... are consecutive releases, one record fewer each: "
        "attack each consecutive pair, n one smaller per step",
    )
    audit.add_argument(
        "--trust-pickle",
        action="store_true",
        help="also read .pkl/.pickle/.joblib snapshots (unpickling runs code from the file)",
    )
    audit.add_argument("--out", default=None, help="output folder (default: runs/audit-<time>)")
    audit.add_argument("--overwrite", action="store_true", help="replace an audit in --out")
    audit.add_argument("--quiet", action="store_true", help="print nothing")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jaxrecon` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "datasets":
            return _datasets(args)
        if args.command == "audit":
            return _audit(args)
    except InputError as err:
        sys.stderr.write(f"jaxrecon: error: {_with_flag(err, parser, args.command)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("jaxrecon: interrupted\n")
        return 130
    return 0


def _with_flag(err: InputError, parser: argparse.ArgumentParser, command: str) -> str:
    """The error's message, its library argument name replaced by the command's flag
    (`n_train: ...` -> `--n-train: ...`) when the command has one."""
    message = str(err)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {
        action.dest: action.option_strings[0]
        for action in sub.choices[command]._actions
        if action.option_strings
    }
    if err.argument in flags and message.startswith(f"{err.argument}:"):
        return flags[err.argument] + message[len(err.argument) :]
    return message


def _run(args: argparse.Namespace) -> int:
    import jax

    # Before anything else touches JAX: initialising the backends ends the chance to join.
    _initialize_distributed(args)
    # Exactness checks need float64; float32 runs still use float32 arrays throughout.
    jax.config.update("jax_enable_x64", True)
    from jaxrecon import engine, report, store
    from jaxrecon.config import RunConfig

    # Process 0 alone prints and writes the final files (every process writes its chunks).
    lead = jax.process_index() == 0
    quiet = args.quiet or not lead

    config = RunConfig(
        dataset=args.dataset,
        model=args.model,
        unlearning=args.unlearning,
        attacks=tuple(a.strip() for a in args.attacks.split(",") if a.strip()),
        n_train=args.n_train,
        n_public=args.n_public,
        deletions=args.deletions,
        l2=args.l2,
        seed=args.seed,
        data_dir=args.data_dir,
        dtype=args.dtype,
        chunk_size=args.chunk_size,
        save_arrays=args.save_arrays,
        devices=args.devices,
        features=args.features,
        rff_dim=args.rff_dim,
        rff_bandwidth=args.rff_bandwidth,
        download=args.download,
        defense=args.defense,
        epsilon=args.epsilon,
        delta=args.delta,
        unlearn_steps=args.unlearn_steps,
        unlearn_lr=args.unlearn_lr,
        shards=args.shards,
        deletions_per_request=args.deletions_per_request,
        sequential=args.sequential,
        assumed_n=args.assumed_n,
        assumed_l2=args.assumed_l2,
        public_shift=args.public_shift,
        label_known=args.label_known,
    ).validate()
    if args.out is None and jax.process_count() > 1:  # each process would pick its own time
        raise InputError(
            f"out: required with {jax.process_count()} processes (a folder all of them see)",
            argument="out",
        )
    out = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    _check_writable(out)
    resumed = store.prepare_out_dir(out, config, overwrite=args.overwrite)
    if resumed and not quiet:
        print(f"resuming the run in {out} (same config): finished chunks are reused")
    result = engine.run(config, progress=not quiet, checkpoint_dir=out, overwrite=args.overwrite)
    if not lead:
        return 0
    result.summary["config"]["out"] = out
    written = report.write_outputs(result, out, save_arrays=args.save_arrays)
    if not quiet:
        print(report.format_table(result.summary))
        print(f"labels: {result.summary['data']['label_rule']}")
        print(f"wrote {', '.join(os.path.basename(p) for p in written)} to {out}")
    return 0


def _initialize_distributed(args: argparse.Namespace) -> None:
    """`jax.distributed.initialize` from --coordinator/--num-processes/--process-id (all three),
    or with no arguments under --distributed (the cluster says); nothing without them.

    Raises:
      InputError: a missing or bad flag, or the runtime could not start (naming the flag).
    """
    from jaxrecon import _validate

    explicit = {
        "coordinator": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    given = [name for name, value in explicit.items() if value is not None]
    if not given and not args.distributed:
        return
    if given and len(given) < len(explicit):
        missing = next(name for name, value in explicit.items() if value is None)
        raise _validate.fail(
            missing,
            f"required with --{given[0].replace('_', '-')} (give --coordinator, "
            "--num-processes and --process-id together, or --distributed alone)",
        )
    if given:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _validate.fail(
                "coordinator", f"must be HOST:PORT (a port in 1..65535), got {args.coordinator!r}"
            )
        _validate.integer("num_processes", args.num_processes, minimum=1)
        _validate.integer("process_id", args.process_id, minimum=0, maximum=args.num_processes - 1)
    import jax

    try:
        if given:
            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as err:
        reason = (str(err).strip() or type(err).__name__).splitlines()[0]
        if given:
            raise _validate.fail(
                "coordinator", f"could not join the run at {args.coordinator!r}: {reason}"
            ) from None
        if isinstance(err, ValueError):  # nothing detected: no coordinator, count or index
            reason = f"the cluster gave no settings: {reason}"
        raise _validate.fail(
            "distributed",
            f"could not join a run ({reason}); start under Slurm, Open MPI or Cloud TPU, or "
            "pass --coordinator, --num-processes and --process-id",
        ) from None


def _sweep(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxrecon import sweep

    _check_writable(args.out)
    rows = sweep.run_sweep(args.grid, args.out, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        for row in rows:
            cells = [f"{row['run']:<45}", f"{row['score_name']} {row['test_score']:.3f}"]
            if "hrec_cosine_median" in row:
                cells.append(f"hrec median {row['hrec_cosine_median']:.4f}")
            print("  ".join(cells))
        print(f"wrote {len(rows)} runs and sweep.csv to {args.out}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from jaxrecon import data

    for status in data.dataset_status(args.data_dir):
        available = {True: "yes", False: "no", None: "-"}[status.available]
        print(
            f"{status.usage:<28} {available:<3}  looked in: {status.where}  |  "
            f"get: {status.how_to_get}"
        )
    return 0


def _audit(args: argparse.Namespace) -> int:
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxrecon import auditing, snapshots, store

    out = args.out or os.path.join(
        "runs", "audit-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    _check_writable(out)
    if not args.overwrite and any(os.path.exists(os.path.join(out, f)) for f in AUDIT_FILES):
        raise InputError(
            f"out: {out!r} already holds an audit; pass --overwrite or choose another --out",
            argument="out",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", snapshots.UnsafeLoadWarning)
        try:
            result = auditing.audit(
                args.before,
                args.after,
                args.public,
                model_family=args.model_family,
                n=args.n,
                l2=args.l2,
                features=args.features,
                rff_params=args.rff_params,
                truth=args.truth,
                sequence=args.sequence,
                trust_pickle=args.trust_pickle,
            )
        finally:
            for w in caught:
                if issubclass(w.category, snapshots.UnsafeLoadWarning):
                    sys.stderr.write(f"jaxrecon: warning: {w.message}\n")
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    results = result if args.sequence else [result]
    # Everything is computed before the folder is touched: bad input leaves nothing behind.
    contents = _audit_files(auditing, results, args)
    os.makedirs(out, exist_ok=True)
    for name, data in contents.items():
        store.atomic_write(os.path.join(out, name), _bytes_writer(data))
    if args.overwrite and "reconstructions.png" not in contents:
        stale = os.path.join(out, "reconstructions.png")
        if os.path.exists(stale):
            os.remove(stale)
    if not args.quiet:
        for r in results:
            print(auditing.format_report(r))
        print(f"wrote {', '.join(contents)} to {out}")
    return 0


def _audit_files(auditing, results, args) -> dict[str, bytes]:
    """The audit's output files as bytes, by name (the png only for square images)."""
    import io

    import numpy as np

    if args.sequence:
        report = auditing.sequence_summary(results)
    else:
        report = auditing.summary(results[0])
    report["public"] = args.public
    if args.truth is not None:
        report["truth_file"] = args.truth
    if args.rff_params is not None:
        report["rff_params"] = args.rff_params
    contents = {
        "summary.json": (json.dumps(report, indent=2) + "\n").encode(),
        "reconstructions.csv": auditing.reconstructions_csv(results).encode(),
    }
    arrays = auditing.arrays(results)
    figure = _audit_figure(auditing, arrays, args)
    if figure is not None:
        contents["reconstructions.png"] = figure
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    contents["reconstruction.npz"] = buffer.getvalue()
    return contents


def _audit_figure(auditing, arrays, args) -> bytes | None:
    """reconstructions.png when the inputs look like square grey images (d = s², s >= 4): HRec's
    reconstructions, above the deleted records when --truth is given; at most 20 deletions."""
    import io
    import math

    import numpy as np

    x_hat = arrays["hrec_x"][:20]
    side = math.isqrt(x_hat.shape[1])
    if side < 4 or side * side != x_hat.shape[1]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"HRec": x_hat}
    if args.truth is not None:
        truth = auditing.load_records(args.truth, "truth", labels_required=False)[0]
        rows = {"deleted": truth[: len(x_hat)], "HRec": x_hat}
    cols = len(x_hat)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.2 * cols + 0.6, 1.3 * len(rows)), squeeze=False
    )
    for r, (label, images) in enumerate(rows.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]).reshape(side, side), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _bytes_writer(data: bytes):
    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return writer


def _check_writable(path: str) -> None:
    """Raises InputError unless `path` is (or can be created as) a writable folder."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"out: {path!r} exists and is not a folder", argument="out")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(
            f"out: {path!r} is not writable ({probe!r} denies writing)", argument="out"
        )


if __name__ == "__main__":
    sys.exit(main())
