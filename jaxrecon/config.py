"""`RunConfig`: every option of `jaxrecon run`, validated at the boundary, and its fingerprint.

The choices (models, unlearning methods, attacks, feature maps, dtypes) come from the registries
of the layers that implement them, so a new registry entry is a new valid option.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from jaxrecon import _validate
from jaxrecon import data as _data
from jaxrecon import models as _models
from jaxrecon import reconstruction as _reconstruction
from jaxrecon import scenario as _scenario
from jaxrecon import unlearners as _unlearners
from jaxrecon._version import __version__

# The registries' names when this module was imported (validation reads the registries).
ATTACKS = tuple(_reconstruction.ATTACKS)
DEFAULT_ATTACKS = _reconstruction.DEFAULT_ATTACKS
UNLEARNING_METHODS = tuple(_unlearners.UNLEARNING)
FEATURES = _scenario.FEATURES
DTYPES = _scenario.DTYPES
# Options that change where or what is written, not the numbers.
NOT_HASHED = frozenset({"save_arrays", "devices", "download"})
# Options added after runs were written: hashed only when they differ from their defaults.
LATER_FIELDS = ("assumed_n", "assumed_l2", "public_shift", "label_known")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every option of `jaxrecon run` (see the README's CLI reference).

    Attributes:
      dataset: data set name (`data.DATASETS`; parameters after a colon, e.g. "acs_income:NY").
      model: a model family of `models.MODELS`.
      unlearning: an unlearning method of `unlearners.UNLEARNING`.
      attacks: attacks to run, names of `reconstruction.ATTACKS`.
      n_train: training-set size n.
      n_public: the attacker's public samples m; None = the rest of the pool minus the test split.
      deletions: B, single-sample deletions drawn at random from the training set.
      l2: regulariser λ (> 0).
      seed: seeds the split, the deleted indices and synthetic data.
      data_dir: folder with local data files, also the tfds / folktables data root (unused by
        the embedded data sets).
      dtype: "float64" (exactness) or "float32" (speed on accelerators).
      chunk_size: deletions per compiled batch (rounded up to a multiple of the devices).
      save_arrays: also write arrays.npz.
      devices: shard each chunk's deletions over this many local devices (None: all of them).
        Results do not depend on it.
      features: "identity" (p = [x, 1]) or "rff" (random Fourier features plus the bias).
      rff_dim: number of random Fourier features F (D = F + 1).
      rff_bandwidth: RFF kernel bandwidth σ; None = the median pairwise distance of the public
        inputs (the median heuristic; the attacker knows the map, DESIGN §2).
      download: allow downloading a data set that has no local copy (tfds, folktables).
      defense: "none" or "output-perturbation" (Gaussian noise on every released model).
      epsilon, delta: the (ε, δ) target of the defence and of the methods `certified` and
        `descent-to-delete` (ε None: 1.0 for those methods; required with a defence).
      unlearn_steps, unlearn_lr: steps and step size of the first-order methods (None: 10
        steps, step 1/M with M the objective's smoothness bound).
      shards: S, the number of SISA shards (`--unlearning sisa`).
      deletions_per_request: k, training records removed together by each deletion request.
      sequential: delete the records one after another, publishing every intermediate model
        (the attacker differences consecutive releases), instead of each from θ⁺.
      assumed_n: the training-set size the attacker believes (>= 2); None = the true n_train.
      assumed_l2: the regulariser the attacker believes (> 0); None = the true l2.
      public_shift: the distribution of the attacker's public data, a spec of
        `scenario.shifted_public` ("none", "balance:<R>", "dataset:<NAME>", "noise:<SIGMA>").
      label_known: the attacker knows the deleted record's label (`gradmatch`, `hrec-plus`);
        False (the paper's attacker) = the attack may not use the label anywhere.
    """

    dataset: str = "digits"
    model: str = "softmax"
    unlearning: str = "exact"
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    n_train: int = 1000
    n_public: int | None = None
    deletions: int = 200
    l2: float = 1.0
    seed: int = 0
    data_dir: str | None = None
    dtype: str = "float64"
    chunk_size: int = 100
    save_arrays: bool = False
    devices: int | None = None
    features: str = "identity"
    rff_dim: int = 4096
    rff_bandwidth: float | None = None
    download: bool = False
    defense: str = "none"
    epsilon: float | None = None
    delta: float = 1e-5
    unlearn_steps: int | None = None
    unlearn_lr: float | None = None
    shards: int = 5
    deletions_per_request: int = 1
    sequential: bool = False
    assumed_n: int | None = None
    assumed_l2: float | None = None
    public_shift: str = "none"
    label_known: bool = False

    def validate(self) -> RunConfig:
        """Checks every option that does not need the data; returns self.

        Raises:
          InputError: naming the option (its field name; the CLI writes the flag) and value.
        """
        _validate.choice("model", self.model, _models.MODELS)
        _validate.choice("unlearning", self.unlearning, _unlearners.UNLEARNING)
        _validate.choice("dtype", self.dtype, DTYPES)
        _validate.choice("features", self.features, FEATURES)
        _validate.integer("rff_dim", self.rff_dim, minimum=1)
        if self.rff_bandwidth is not None:
            _validate.positive("rff_bandwidth", self.rff_bandwidth)
        _data.parse_dataset_name(self.dataset)
        _reconstruction.check_attack_names(self.attacks)
        _validate.integer("n_train", self.n_train, minimum=2)
        if self.n_public is not None:
            _validate.integer("n_public", self.n_public, minimum=1)
        _validate.integer("deletions", self.deletions, minimum=1)
        _validate.integer("chunk_size", self.chunk_size, minimum=1)
        if self.devices is not None:
            _validate.integer("devices", self.devices, minimum=1)
        _validate.integer("deletions_per_request", self.deletions_per_request, minimum=1)
        if self.deletions * self.deletions_per_request > self.n_train:
            raise _validate.fail(
                "deletions",
                f"times deletions_per_request ({self.deletions_per_request}) must be <= n_train "
                f"({self.n_train}), got {self.deletions}",
            )
        _validate.positive("l2", self.l2, why="the objective must be strongly convex")
        _validate.choice("defense", self.defense, _unlearners.DEFENSES)
        if self.epsilon is not None:
            _validate.positive("epsilon", self.epsilon)
        if not 0 < self.delta < 1:
            raise _validate.fail("delta", f"must be in (0, 1), got {self.delta!r}")
        if self.unlearn_steps is not None:
            _validate.integer("unlearn_steps", self.unlearn_steps, minimum=1)
        if self.unlearn_lr is not None:
            _validate.positive("unlearn_lr", self.unlearn_lr)
        _validate.integer("shards", self.shards, minimum=2)
        if self.sequential:
            _validate.choice("unlearning", self.unlearning, _unlearners.SEQUENTIAL_METHODS)
            if self.deletions_per_request != 1:
                raise _validate.fail("sequential", "deletes one record at a time (k = 1)")
        _validate.integer("seed", self.seed, minimum=0)
        if self.assumed_n is not None:
            _validate.integer("assumed_n", self.assumed_n, minimum=2)
        if self.assumed_l2 is not None:
            _validate.positive("assumed_l2", self.assumed_l2)
        _scenario.parse_public_shift(self.public_shift)
        if not isinstance(self.label_known, bool):
            raise _validate.fail("label_known", f"must be true or false, got {self.label_known!r}")
        return self


def config_hash(config: RunConfig) -> str:
    """A fingerprint of everything that determines a run's numbers (not where it is written).

    Two configs with the same hash produce the same chunks, so an interrupted run may resume
    from the chunks of the other. Includes the jaxrecon version.
    """
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_HASHED}
    for name in LATER_FIELDS:  # at their defaults, runs written before they existed resume
        if fields[name] == getattr(RunConfig, name):
            del fields[name]
    fields["attacks"] = list(config.attacks)
    blob = json.dumps({"config": fields, "jaxrecon": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
