"""Command line: `jaxrecon run ...` and `jaxrecon datasets` (see the README's CLI reference).

Bad input prints one line `jaxrecon: error: <option>: <what is wrong>` on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import datetime
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
    return parser


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

    # Exactness checks need float64; float32 runs still use float32 arrays throughout.
    jax.config.update("jax_enable_x64", True)
    from jaxrecon import engine, report, store
    from jaxrecon.config import RunConfig

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
    ).validate()
    out = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    _check_writable(out)
    resumed = store.prepare_out_dir(out, config, overwrite=args.overwrite)
    if resumed and not args.quiet:
        print(f"resuming the run in {out} (same config): finished chunks are reused")
    result = engine.run(
        config, progress=not args.quiet, checkpoint_dir=out, overwrite=args.overwrite
    )
    result.summary["config"]["out"] = out
    written = report.write_outputs(result, out, save_arrays=args.save_arrays)
    if not args.quiet:
        print(report.format_table(result.summary))
        print(f"labels: {result.summary['data']['label_rule']}")
        print(f"wrote {', '.join(os.path.basename(p) for p in written)} to {out}")
    return 0


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
