"""Safe readers of released models (DESIGN §5 `snapshots`): files in, θ in jaxrecon's layout out.

An audit (`jaxrecon.audit`) attacks two models an operator released, before (θ⁺) and after (θ⁻)
a deletion. This module reads each one into a `Snapshot`: θ as [D] (scalar-output models) or
[D, K] (multi-output) over the features p = [x, 1], the bias row LAST, plus what the file says
about the objective it minimises, converted to jaxrecon's
L(θ) = Σ_i ℓ(θ; p_i, y_i) + ½ Σ_c λ_c θ_c² (DESIGN §3).

Formats, chosen by the file extension; none of them runs code from the file unless asked:

- `.skops`: a scikit-learn estimator saved with `skops.io.dump`. Loaded only when skops trusts
  every type in the file by default (no pickle; anything else is refused and named). Converted:

  - `Ridge` (1-D target), ‖y − Xw − b‖² + α‖w‖²: ridge, λ = α, intercept unpenalised;
  - `LogisticRegression` (L2), C·Σℓ + ½‖w‖²: logistic (K = 2) or softmax (K > 2, multinomial),
    λ = 1/C, intercept unpenalised (solver liblinear: penalised, bias λ = 1/(C·s²));
  - `LinearSVC` (squared hinge, L2), C·Σ max(0, 1 − y·f)² + ½‖w‖² + ½w_b²: svm (binary, or
    one-vs-rest for K > 2), λ = 1/C, bias λ = 1/(C·s²);
  - `SGDClassifier(loss="log_loss")` (binary), (1/n)Σℓ + α·½‖w‖²: logistic, λ = n·α,
    intercept unpenalised.

  s is `intercept_scaling`: liblinear appends a constant feature s whose weight w_b is
  penalised, so the intercept is b = s·w_b and ½w_b² = ½b²/s². n for SGD is read from the
  estimator itself: `t_ = n_iter_·n + 1` weight updates. Ridge, LogisticRegression and
  LinearSVC do not record n. Refused: no intercept (HRec fixes the scale and sign of the
  record with the bias coordinate), L1 or elastic-net penalties, class weights, multi-target
  Ridge, one-vs-rest or Crammer-Singer multiclass logistic models, other estimators.
- `.npz` (read with allow_pickle=False) and `.safetensors`, plain arrays from any framework (a
  PyTorch or JAX user exports two tensors): `w` [d] or [d, K] and `b` (a scalar or [K]), θ =
  [w; b] with the bias row last; or `theta` [D] or [D, K] directly; or (a PyTorch `nn.Linear`)
  `weight` [K, d] and `bias` [K], θ = [weightᵀ; bias]. K = 1 gives [D]. A `w` without `b` is
  refused: HRec reads the record's scale and sign off the bias coordinate. Optional fields: in
  an .npz, 0-d arrays `model`, `l2`, `n_train`, `bias_penalty` and a 1-D `classes`; in a
  .safetensors file the same as string metadata (`classes` comma-separated). Without
  `bias_penalty` the bias is penalised like the weights (jaxrecon's own convention), so θ from
  `jaxrecon run` or `scenario.fit` needs only `w` and `b`.
- `.msgpack`: flax serialization (`flax.serialization.msgpack_serialize`) of a tree with
  `theta`, or with exactly one dense layer's `kernel` [d, K] and `bias` [K] (e.g.
  `{"params": {"Dense_0": ...}}`); the optional fields under a top-level `"jaxrecon"` dict.
- `.pkl`, `.pickle`, `.joblib`: only with `trust_pickle=True` (`--trust-pickle`), which warns:
  unpickling runs code from the file. A fitted scikit-learn estimator (converted as above) or a
  dict of arrays (read like an .npz). Refused otherwise, whatever the file holds.

Sizes are checked before anything is allocated: every `.npy` member of an .npz or skops file
must hold the bytes its header declares, and a safetensors header's shapes must match its data
offsets and the file's size, so a forged header declaring shape [10**12] is one error line.

`bias_penalty` is the bias coordinate's λ over the weights' (0 = unpenalised intercept; None =
not stated, which the audit reads as jaxrecon's own convention, 1). A truncated or corrupt file,
a missing array, or a field of the wrong type is an `InputError` naming the argument, the file
and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxrecon import _validate, datasets
from jaxrecon import models as _models
from jaxrecon.errors import InputError

FORMATS = {
    ".skops": "scikit-learn estimator (skops)",
    ".npz": "NumPy arrays",
    ".safetensors": "safetensors",
    ".msgpack": "flax msgpack",
}
# Read only with trust_pickle: unpickling runs code from the file.
PICKLE_FORMATS = (".pkl", ".pickle", ".joblib")
# safetensors' own limit on the JSON header.
_SAFETENSORS_HEADER_LIMIT = 100_000_000
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
# Families whose θ is [D] (one output); the others are [D, K].
_SCALAR = ("ridge", "logistic")
_MULTI = ("softmax", "ridge-onehot")
_FIELDS = ("model", "l2", "n_train", "bias_penalty", "classes")


class UnsafeLoadWarning(UserWarning):
    """A snapshot was unpickled (`trust_pickle`): loading it ran code from the file."""


class Snapshot(NamedTuple):
    """One released model in jaxrecon's layout.

    Attributes:
      params: θ, float64 [D] or [D, K] over p = [x, 1] (bias row last).
      model: the family (a name of `models.MODELS`), or None when the file does not say.
      classes: the estimator's class labels ([K] or [2]: class index c is `classes[c]`; the
        binary positive class is `classes[1]`), or None (labels are 0..K−1).
      l2: λ on the weights in jaxrecon's units, or None when the file does not say.
      l2_per_sample: for objectives that average the loss (SGD): λ = n·l2_per_sample; else None.
      bias_penalty: the bias coordinate's λ over the weights' λ (0: unpenalised intercept), or
        None when the file does not say.
      n_train: the training-set size n when the file records it (SGD), else None.
      source: the file read (or "estimator").
      kind: what it was, e.g. "sklearn LogisticRegression (lbfgs)", "npz".
    """

    params: np.ndarray
    model: str | None = None
    classes: np.ndarray | None = None
    l2: float | None = None
    l2_per_sample: float | None = None
    bias_penalty: float | None = None
    n_train: int | None = None
    source: str = ""
    kind: str = ""

    @property
    def num_classes(self) -> int | None:
        """K for [D, K] parameters, 2 for a binary classifier, None for scalar regression."""
        if self.params.ndim == 2:
            return self.params.shape[1]
        return None if self.model == "ridge" else 2


def load_snapshot(
    path: str,
    *,
    argument: str = "snapshot",
    model: str | None = None,
    trust_pickle: bool = False,
) -> Snapshot:
    """Reads a released model from `path` (format by extension, see the module docstring).

    Args:
      path: a `.skops`, `.npz`, `.safetensors` or `.msgpack` file (or, with `trust_pickle`, a
        `.pkl`, `.pickle` or `.joblib` file).
      argument: the argument name errors are reported under (the CLI maps it to its flag).
      model: the family, for files that do not record it (must agree with one that does).
      trust_pickle: read pickle / joblib files (an `UnsafeLoadWarning` says that this runs
        code from the file); without it they are refused.

    Returns:
      A `Snapshot`.

    Raises:
      InputError: a missing, truncated, corrupt or unsafe file, or contents that do not
        describe a supported linear model (the message names `argument` and the file).
    """
    if not isinstance(path, str | os.PathLike):
        raise _validate.fail(argument, f"need a file path, got {path!r}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in PICKLE_FORMATS and not trust_pickle:
        raise _validate.fail(
            argument,
            f"{path}: refused: unpickling runs code from the file; pass --trust-pickle "
            "(trust_pickle=True) only for files you made, or export a safe format (.skops, "
            ".npz, .safetensors)",
        )
    if ext not in FORMATS and ext not in PICKLE_FORMATS:
        raise _validate.fail(
            argument,
            f"{path}: unknown snapshot format {ext or '(no extension)'!r}; use "
            + ", ".join(f"{e} ({what})" for e, what in FORMATS.items())
            + " (pickle and joblib only with --trust-pickle)",
        )
    if not os.path.isfile(path):
        raise _validate.fail(argument, f"{path}: file not found")
    readers = {
        ".skops": _read_skops,
        ".npz": _read_npz,
        ".safetensors": _read_safetensors,
        ".msgpack": _read_msgpack,
    }
    snap = readers.get(ext, _read_pickle)(path, argument)
    return with_model(snap, model)


def as_snapshot(
    obj: Any,
    *,
    argument: str = "snapshot",
    model: str | None = None,
    trust_pickle: bool = False,
) -> Snapshot:
    """A `Snapshot` from what a caller holds: a file path (`load_snapshot`), a `Snapshot`, a
    fitted scikit-learn estimator (`from_estimator`), or θ itself as an array ([D] or [D, K],
    bias row last, jaxrecon's conventions: the bias penalised like the weights).

    Raises:
      InputError: naming `argument`, as the reader it dispatches to.
    """
    if isinstance(obj, str | os.PathLike):
        return load_snapshot(obj, argument=argument, model=model, trust_pickle=trust_pickle)
    if isinstance(obj, Snapshot):
        snap = obj
    elif (type(obj).__module__ or "").startswith("sklearn."):
        snap = from_estimator(obj, argument=argument, source=f"{argument} ({type(obj).__name__})")
    else:
        try:
            theta = np.asarray(obj)
        except (TypeError, ValueError):
            theta = np.asarray(None)
        if theta.dtype.kind == "O":
            raise _validate.fail(
                argument, f"need a file, estimator or array, got {type(obj).__name__}"
            )
        snap = _build(theta, {}, f"{argument} array", "array", argument)
    return with_model(snap, model)


def from_estimator(estimator: Any, *, argument: str = "estimator", source: str = "estimator"):
    """A fitted scikit-learn linear model as a `Snapshot` (the conversion table above).

    Reads attributes only (`coef_`, `intercept_`, `classes_`, hyper-parameters); never calls
    the estimator.

    Raises:
      InputError: an unsupported estimator or setting, or one that is not fitted.
    """
    name = type(estimator).__name__
    module = type(estimator).__module__ or ""
    converters = {
        "Ridge": _sk_ridge,
        "LogisticRegression": _sk_logistic,
        "LinearSVC": _sk_linear_svc,
        "SGDClassifier": _sk_sgd,
    }
    if not module.startswith("sklearn.") or name not in converters:
        raise _validate.fail(
            argument,
            f"{source}: {module}.{name} is not supported; use a fitted scikit-learn "
            f"{', '.join(converters)} (without a Pipeline: give the public data as the "
            "estimator sees it)",
        )
    if not hasattr(estimator, "coef_"):
        raise _validate.fail(argument, f"{source}: the {name} is not fitted (no coef_)")

    def fail(message):
        return _validate.fail(argument, f"{source}: {name}: {message}")

    if not getattr(estimator, "fit_intercept", True):
        raise fail(
            "fit_intercept=False is not supported: HRec reads the record's scale and sign off "
            "the bias coordinate"
        )
    if getattr(estimator, "class_weight", None) is not None:
        raise fail("class_weight changes the objective; only unweighted models are supported")
    fields = converters[name](estimator, fail)
    snap = Snapshot(source=source, **fields)
    return _checked(snap, argument)


def penalty_rows(snapshot: Snapshot, l2: float, l2_bias: float | None = None) -> np.ndarray:
    """The per-coordinate λ shaped like θ: `l2` on the weight rows, the bias row `l2_bias`
    (default l2·bias_penalty, jaxrecon's convention 1 when the snapshot does not say)."""
    if l2_bias is None:
        factor = 1.0 if snapshot.bias_penalty is None else snapshot.bias_penalty
        l2_bias = l2 * factor
    out = np.full(snapshot.params.shape, float(l2))
    out[-1] = l2_bias
    return out


def check_pair(before: Snapshot, after: Snapshot) -> None:
    """The two snapshots of one audit must describe the same family and objective.

    Fields one of them leaves unstated are not compared (θ⁻ may come from another tool than
    θ⁺); n is never compared: θ⁻ was trained on one record fewer (SGD's t_ says so).

    Raises:
      InputError: naming `after` and what differs.
    """
    if after.params.shape != before.params.shape:
        raise _validate.fail(
            "after",
            f"{after.source}: parameters of shape {list(after.params.shape)}, but before's are "
            f"{list(before.params.shape)}",
        )
    for field in ("model", "l2", "l2_per_sample", "bias_penalty"):
        a, b = getattr(after, field), getattr(before, field)
        if a is None or b is None or a == b:
            continue
        if not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)):
            raise _validate.fail(
                "after", f"{after.source}: {field} {a!r} differs from before's {b!r}"
            )
    a, b = after.classes, before.classes
    if a is not None and b is not None and not np.array_equal(a, b):
        raise _validate.fail("after", f"{after.source}: classes {a} differ from before's {b}")


# ---------------------------------------------------------------------------------------------
# scikit-learn conversions (each returns Snapshot fields).


def _sk_ridge(est, fail) -> dict[str, Any]:
    coef = np.asarray(est.coef_, np.float64)
    if coef.ndim != 1:
        raise fail(f"multi-target coef_ of shape {list(coef.shape)}; only a 1-D target")
    alpha = np.asarray(est.alpha, np.float64)
    if alpha.ndim != 0:
        raise fail("alpha per target is not supported; give one alpha")
    if getattr(est, "positive", False):
        raise fail("positive=True constrains the weights; only unconstrained ridge")
    params = np.append(coef, float(est.intercept_))
    return dict(
        params=params, model="ridge", l2=float(alpha), bias_penalty=0.0, kind="sklearn Ridge"
    )


def _l2_only(est, fail, default_ratio) -> bool:
    """True for an L2 penalty, False for none; refuses L1 / elastic net with l1_ratio > 0."""
    penalty = getattr(est, "penalty", "l2")
    ratio = getattr(est, "l1_ratio", default_ratio)
    if penalty in (None, "none"):
        return False
    if penalty == "l2" or (penalty in ("deprecated", "elasticnet") and not ratio):
        return True
    raise fail(f"penalty {penalty!r} (l1_ratio {ratio!r}); only an L2 penalty is supported")


def _classes(est, fail) -> np.ndarray:
    classes = np.asarray(est.classes_)
    if classes.dtype.kind == "O":
        try:
            classes = classes.astype(str)
        except (TypeError, ValueError):
            raise fail("classes_ must be numbers or strings") from None
    return classes


def _sk_logistic(est, fail) -> dict[str, Any]:
    penalised = _l2_only(est, fail, None)
    c = float(est.C)
    l2 = 1.0 / c if penalised and math.isfinite(c) else 0.0
    classes = _classes(est, fail)
    solver = getattr(est, "solver", "lbfgs")
    coef = np.asarray(est.coef_, np.float64)
    intercept = np.asarray(est.intercept_, np.float64)
    if len(classes) > 2:
        multi = getattr(est, "multi_class", "auto")
        if multi == "ovr" or (multi == "auto" and solver == "liblinear"):
            raise fail(
                "one-vs-rest logistic regression is not a jaxrecon family; fit a multinomial "
                "model (the default for K > 2 classes)"
            )
        params, model = np.vstack([coef.T, intercept[None, :]]), "softmax"
    else:
        params, model = np.append(coef[0], intercept[0]), "logistic"
    # liblinear penalises the intercept through its constant feature of value intercept_scaling.
    bias = 1.0 / float(est.intercept_scaling) ** 2 if solver == "liblinear" else 0.0
    return dict(
        params=params,
        model=model,
        classes=classes,
        l2=l2,
        bias_penalty=bias if penalised else 0.0,
        kind=f"sklearn LogisticRegression ({solver})",
    )


def _sk_linear_svc(est, fail) -> dict[str, Any]:
    if est.loss != "squared_hinge" or est.penalty != "l2":
        raise fail(
            f"loss {est.loss!r}, penalty {est.penalty!r}: only loss='squared_hinge' with "
            "penalty='l2' (a smooth objective) is supported"
        )
    if getattr(est, "multi_class", "ovr") != "ovr":
        raise fail(f"multi_class {est.multi_class!r}: only one-vs-rest ('ovr')")
    classes = _classes(est, fail)
    coef = np.asarray(est.coef_, np.float64)
    intercept = np.asarray(est.intercept_, np.float64)
    if len(classes) > 2:
        params = np.vstack([coef.T, intercept[None, :]])
    else:
        params = np.append(coef[0], intercept[0])
    return dict(
        params=params,
        model="svm",
        classes=classes,
        l2=1.0 / float(est.C),
        bias_penalty=1.0 / float(est.intercept_scaling) ** 2,
        kind="sklearn LinearSVC",
    )


def _sk_sgd(est, fail) -> dict[str, Any]:
    if est.loss not in ("log_loss", "log"):
        raise fail(f"loss {est.loss!r}: only loss='log_loss' (logistic regression)")
    penalised = _l2_only(est, fail, 0.0)
    classes = _classes(est, fail)
    if len(classes) != 2:
        raise fail(
            f"{len(classes)} classes: SGDClassifier trains one-vs-rest binary models, which is "
            "not a jaxrecon family; only binary"
        )
    n_iter, updates = int(est.n_iter_), float(est.t_)
    n_train = (updates - 1) / n_iter if n_iter > 0 else math.nan
    return dict(
        params=np.append(np.asarray(est.coef_, np.float64)[0], float(est.intercept_[0])),
        model="logistic",
        classes=classes,
        l2_per_sample=float(est.alpha) if penalised else 0.0,
        bias_penalty=0.0,
        n_train=int(round(n_train)) if math.isfinite(n_train) and n_train >= 2 else None,
        kind="sklearn SGDClassifier",
    )


# ---------------------------------------------------------------------------------------------
# File readers.


def _read_skops(path: str, argument: str) -> Snapshot:
    import skops.io as sio

    try:
        datasets.check_npy_members(path)
        untrusted = sio.get_untrusted_types(file=path)
        if untrusted:
            raise _validate.fail(
                argument,
                f"{path}: refused: the file holds types skops does not trust by default "
                f"({', '.join(untrusted)}); only plain scikit-learn linear models are read",
            )
        estimator = sio.load(path)
    except InputError:
        raise
    except Exception as err:  # skops raises many kinds on a corrupt or truncated file
        raise _unreadable(argument, path, "skops", err) from err
    return from_estimator(estimator, argument=argument, source=path)


def _read_pickle(path: str, argument: str) -> Snapshot:
    """A pickle or joblib file (trusted by the caller): an estimator or a dict of arrays."""
    warnings.warn(f"unpickling {path} runs code from it", UnsafeLoadWarning, stacklevel=3)
    try:
        if path.lower().endswith(".joblib"):
            import joblib

            obj = joblib.load(path)
        else:
            with open(path, "rb") as f:
                obj = pickle.load(f)
    except Exception as err:  # unpickling raises anything the file's code raises
        raise _unreadable(argument, path, "pickle", err) from err
    if isinstance(obj, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in obj.items()}
        meta = {k: arrays[k] for k in _FIELDS if k in arrays}
        theta = _theta_from_arrays(arrays, path, argument)
        return _build(theta, meta, path, "pickle (dict of arrays)", argument)
    return from_estimator(obj, argument=argument, source=path)


def read_npz(path: str, argument: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file (allow_pickle=False), sizes checked before loading
    (`datasets.check_npy_members`).

    Raises:
      InputError: a missing, truncated or corrupt file, object arrays, or a member whose header
        declares more than it holds (naming `argument` and the file).
    """
    if not os.path.isfile(path):
        raise _validate.fail(argument, f"{path}: file not found")
    try:
        datasets.check_npy_members(path)
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    # Truncated or corrupt (BadZipFile, EOFError, zlib.error), object arrays or forged sizes
    # (ValueError).
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise _unreadable(argument, path, ".npz", err) from err


def _read_npz(path: str, argument: str) -> Snapshot:
    arrays = read_npz(path, argument)
    meta = {k: arrays[k] for k in _FIELDS if k in arrays}
    return _build(_theta_from_arrays(arrays, path, argument), meta, path, "npz", argument)


def _read_safetensors(path: str, argument: str) -> Snapshot:
    from safetensors import SafetensorError, safe_open

    try:
        _check_safetensors_header(path)
        with safe_open(path, framework="np") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise _unreadable(argument, path, "safetensors", err) from err
    if "classes" in meta:
        meta["classes"] = np.asarray(meta["classes"].split(","))
    meta = {k: meta[k] for k in _FIELDS if k in meta}
    theta = _theta_from_arrays(tensors, path, argument)
    return _build(theta, meta, path, "safetensors", argument)


def _check_safetensors_header(path: str) -> None:
    """The header's tensors must fit the file: 8 bytes of header length N, N bytes of JSON, then
    the data, each tensor's `data_offsets` spanning exactly prod(shape)·itemsize bytes inside it.

    Raises:
      ValueError: what does not fit (before any tensor is read).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes: too short for a safetensors header")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, _SAFETENSORS_HEADER_LIMIT):
            raise ValueError(f"header declares {length:,} bytes, the file has {size:,}")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    data = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shape, (begin, end) = [int(n) for n in info["shape"]], info["data_offsets"]
            itemsize = _SAFETENSORS_ITEMSIZE[info["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r}: malformed entry {info!r}") from None
        declared = math.prod(shape) * itemsize
        if min(shape, default=0) < 0 or declared != end - begin or not 0 <= begin <= end <= data:
            raise ValueError(
                f"tensor {name!r} declares shape {shape} {info['dtype']} ({declared:,} bytes) "
                f"at bytes {begin}..{end}, but the file holds {data:,} bytes of data"
            )


def _read_msgpack(path: str, argument: str) -> Snapshot:
    from flax import serialization

    try:
        with open(path, "rb") as f:
            tree = serialization.msgpack_restore(f.read())
    except Exception as err:  # msgpack raises many kinds on a corrupt or truncated file
        raise _unreadable(argument, path, "flax msgpack", err) from err
    if not isinstance(tree, Mapping):
        raise _validate.fail(argument, f"{path}: expected a dict of arrays, got {type(tree)}")
    meta = tree.get("jaxrecon", {})
    if not isinstance(meta, Mapping):
        raise _validate.fail(argument, f"{path}: 'jaxrecon' must be a dict of fields")
    meta = {k: np.asarray(meta[k]) if k == "classes" else meta[k] for k in _FIELDS if k in meta}
    tree = {k: v for k, v in tree.items() if k != "jaxrecon"}
    if "theta" in tree:
        theta = tree["theta"]
    else:
        layers = list(_dense_layers(tree))
        if len(layers) != 1:
            raise _validate.fail(
                argument,
                f"{path}: need 'theta' or exactly one dense layer (kernel and bias), found "
                f"{len(layers)}",
            )
        kernel, bias = (np.asarray(a) for a in layers[0])
        theta = _stack_linear(kernel, bias, "kernel", path, argument, transpose=False)
    return _build(theta, meta, path, "flax msgpack", argument)


def _dense_layers(tree):
    """(kernel, bias) of every dict in `tree` that holds both."""
    if isinstance(tree, Mapping):
        if "kernel" in tree and "bias" in tree:
            yield tree["kernel"], tree["bias"]
            return
        for value in tree.values():
            yield from _dense_layers(value)


def _theta_from_arrays(arrays: Mapping[str, Any], path: str, argument: str) -> np.ndarray:
    """θ from `theta`, from `w` and `b`, or from `weight` and `bias` (module docstring)."""
    if "theta" in arrays:
        return arrays["theta"]
    if "w" in arrays:
        if "b" not in arrays:
            raise _validate.fail(
                argument,
                f"{path}: has 'w' but no bias 'b': HRec needs the bias (it reads the record's "
                "scale and sign off the bias coordinate); export the intercept as 'b'",
            )
        w, b = np.asarray(arrays["w"]), np.asarray(arrays["b"])
        if w.ndim == 1 and b.size == 1:
            w, b = w[:, None], b.reshape(1)
        return _stack_linear(w, b, "w", path, argument, transpose=False)
    if "weight" in arrays and "bias" in arrays:
        return _stack_linear(arrays["weight"], arrays["bias"], "weight", path, argument, True)
    raise _validate.fail(
        argument,
        f"{path}: need arrays 'w' and 'b', 'theta', or 'weight' and 'bias' (has "
        f"{', '.join(arrays) or 'none'})",
    )


def _stack_linear(weight, bias, name, path, argument, transpose) -> np.ndarray:
    """θ = [Wᵀ; b] for a [K, d] `weight` (transpose) or a [d, K] kernel, K = 1 -> [D]."""
    weight, bias = np.asarray(weight), np.asarray(bias)
    weight = weight.T if transpose else weight
    if weight.ndim != 2 or bias.shape != (weight.shape[1],):
        raise _validate.fail(
            argument,
            f"{path}: {name} of shape {list(np.shape(weight))} and bias of shape "
            f"{list(bias.shape)} do not form a dense layer",
        )
    theta = np.vstack([weight, bias[None, :]])
    return theta[:, 0] if theta.shape[1] == 1 else theta


def _unreadable(argument: str, path: str, what: str, err: BaseException) -> InputError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return _validate.fail(argument, f"cannot read {path} as {what}: {first or type(err).__name__}")


# ---------------------------------------------------------------------------------------------
# Checks.


def _build(theta, meta: Mapping[str, Any], path: str, kind: str, argument: str) -> Snapshot:
    """A Snapshot from θ and optional metadata, every field checked."""

    def fail(field, message):
        return _validate.fail(argument, f"{path}: {field}: {message}")

    fields: dict[str, Any] = {}
    for key, value in meta.items():
        value = value.item() if isinstance(value, np.ndarray) and key != "classes" else value
        if key == "model":
            if not isinstance(value, str) or value not in _models.MODELS:
                raise fail(key, f"must be one of {', '.join(_models.MODELS)}, got {value!r}")
        elif key in ("l2", "bias_penalty"):
            value = _number(value)
            if not math.isfinite(value) or value < 0:
                raise fail(key, f"must be a finite number >= 0, got {meta[key]!r}")
        elif key == "n_train":
            number = _number(value)
            if not (math.isfinite(number) and number == int(number) and number >= 2):
                raise fail(key, f"must be an integer >= 2, got {meta[key]!r}")
            value = int(number)
        elif key == "classes":
            value = np.asarray(value)
            if value.ndim != 1 or value.dtype.kind not in "biufUS" or len(value) < 2:
                raise fail(key, "must be a 1-D array of at least 2 numbers or strings")
        fields[key] = value
    snap = Snapshot(params=_params(theta, path, argument), source=path, kind=kind, **fields)
    return _checked(snap, argument)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _params(theta, path: str, argument: str) -> np.ndarray:
    theta = np.asarray(theta)
    if theta.dtype.kind not in "fiu" or theta.ndim not in (1, 2) or theta.shape[0] < 2:
        raise _validate.fail(
            argument,
            f"{path}: theta must be a real [D >= 2] or [D, K] array (bias row last), got "
            f"{theta.dtype} of shape {list(theta.shape)}",
        )
    theta = theta.astype(np.float64)
    if theta.ndim == 2 and theta.shape[1] == 1:
        theta = theta[:, 0]
    if not np.all(np.isfinite(theta)):
        raise _validate.fail(argument, f"{path}: theta has non-finite values")
    return theta


def _checked(snap: Snapshot, argument: str) -> Snapshot:
    """Finite parameters; a family (when known) that fits the parameter shape and classes."""
    if not np.all(np.isfinite(snap.params)):
        raise _validate.fail(argument, f"{snap.source}: parameters have non-finite values")
    if snap.model is not None:
        _shape_fits(snap.model, snap.params, f"{snap.source}: ", argument)
    if snap.classes is not None:
        k = snap.params.shape[1] if snap.params.ndim == 2 else 2
        if len(snap.classes) != k or len(np.unique(snap.classes)) != k:
            raise _validate.fail(
                argument,
                f"{snap.source}: {len(snap.classes)} distinct classes needed: {k}, got "
                f"{list(snap.classes)}",
            )
    return snap


def _shape_fits(model: str, params: np.ndarray, where: str, argument: str) -> None:
    if model in _SCALAR and params.ndim != 1:
        raise _validate.fail(
            argument, f"{where}a {model} model has θ of shape [D], got {list(params.shape)}"
        )
    if model in _MULTI and (params.ndim != 2 or params.shape[1] < 2):
        raise _validate.fail(
            argument, f"{where}a {model} model has θ of shape [D, K >= 2], got {list(params.shape)}"
        )
    if model == "svm" and params.ndim == 2 and params.shape[1] < 3:
        raise _validate.fail(
            argument, f"{where}a one-vs-rest svm has K >= 3 outputs, got {params.shape[1]}"
        )


def with_model(snap: Snapshot, model: str | None) -> Snapshot:
    """`snap` with its family set to `model` (None: unchanged), checked against what the file
    records and the parameter shape.

    Raises:
      InputError: naming `model`.
    """
    if model is None:
        return snap
    _validate.choice("model", model, _models.MODELS)
    if snap.model is not None and snap.model != model:
        raise _validate.fail(
            "model", f"{model!r}, but {snap.source} holds a {snap.model!r} model ({snap.kind})"
        )
    _shape_fits(model, snap.params, f"{snap.source}: ", "model")
    return snap._replace(model=model)
