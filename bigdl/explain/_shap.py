"""SHAP values out of core: one explainer per model family, run chunk by chunk on the workers.

:func:`shap_values` picks the explainer from the model:

* bigdl's XGB estimators: exact TreeSHAP by XGBoost itself
  (``Booster.predict(pred_contribs=True)``), in margin (log-odds) space;
* ChunkForest: exact TreeSHAP by ``shap.TreeExplainer`` on the fitted
  scikit-learn forest (``forest_``), on probabilities (classifier) or
  predictions (regressor), tree-path-dependent (no background needed);
* torch models (a Trainer's model, TorchClassifier / TorchRegressor, an
  ``nn.Module``): captum's ``DeepLiftShap`` (default) or ``GradientShap``
  against a background drawn from the train split by seed, on the raw
  outputs (logits for classifiers);
* any other estimator with ``predict`` / ``predict_proba``: ``shap.KernelExplainer``
  on a bounded number of rows, with the same kind of background.

The explainer is a small picklable object (sent to each worker once).  The
values are a lazy dask array built with the one block-predict helper (one
block per store chunk); :func:`shap_values` itself runs one pass of tasks,
one per chunk, that returns only sums (mean |SHAP| per feature) and each
chunk's largest additivity error ``|f(x) - base - sum(values)|``, so the
global importance never holds all values.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bigdl._validation import Interval, Options, check_params
from bigdl.errors import SchemaError
from bigdl.explain._samples import first_rows, random_rows
from bigdl.store._dataset import Dataset, open_store
from bigdl.store.kinds import check_split

__all__ = ["shap_values", "ShapExplanation", "KERNEL_MAX_SAMPLES"]

logger = logging.getLogger("bigdl.explain")

METHODS = ("auto", "tree", "deeplift", "gradient", "kernel")
#: KernelSHAP costs ``nsamples`` model calls per explained row: without ``max_samples`` it explains this many rows.
KERNEL_MAX_SAMPLES = 1000
# Elements of (rows x background x sample) one DeepLiftShap / GradientShap call expands to: bounds activations.
_TORCH_BATCH_ELEMENTS = 2 ** 21
# KernelExplainer draws its coalitions from NumPy's global generator, and captum's DeepLift puts hooks on the
# module it explains: one call at a time per process (Dask's threads would mix their draws and hooks).
_KERNEL_LOCK = threading.Lock()
_TORCH_LOCK = threading.Lock()


# ------------------------------------------------------------------ captum's DeepLift between non-linearities
def _copy_inputs(module, args):
    """A forward pre-hook: the module gets a copy of its input tensors (see :func:`separate_nonlinearities`)."""
    return tuple(arg.clone() if hasattr(arg, "clone") else arg for arg in args)


def separate_nonlinearities(module) -> int:
    """Make captum's DeepLift exact where a non-linear module feeds another (``ReLU -> MaxPool2d``).

    captum (0.9, issue #1104, still open) records a non-linear module's
    output gradient with a hook on its output tensor and rewrites the next
    module's input gradient with a hook on its input tensor.  When the two
    modules are adjacent those are the same tensor, and the first hook,
    registered first, sees the gradient *before* the second rewrites it: the
    earlier module gets plain gradients instead of DeepLift multipliers, and
    the values stop adding up (0.1-0.3 on a ReLU -> MaxPool CNN whose outputs
    spread 0.02-0.3).  A forward pre-hook, run before captum's, hands every
    supported non-linear module a copy of its input: the two hooks then sit
    on two tensors, the copy's gradient (rewritten) flows into the original,
    and summation-to-delta holds again (1e-6).  The outputs do not change.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place (a copy made for the explanation).

    Returns
    -------
    int
        The modules given the hook.
    """
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    hooked = 0
    for child in module.modules():
        if type(child) in SUPPORTED_NON_LINEAR:
            child.register_forward_pre_hook(_copy_inputs, prepend=True)
            hooked += 1
    return hooked


# ------------------------------------------------------------------ explainers (they travel to the workers)
class _Explainer:
    """What every explainer gives: ``values(X)``, ``outputs(X)`` (what the values add up to) and base values."""

    method = ""
    n_outputs = 1
    base_values = np.zeros(1)
    output_names: list[str] = []

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.values(X)

    def values(self, X: np.ndarray) -> np.ndarray:
        """The SHAP values of the rows ``X``; every explainer below overrides it (an abstract method)."""
        raise NotImplementedError

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """What the values of ``X`` add up to with the base values; overridden by every explainer below."""
        raise NotImplementedError


class _XGBContributions(_Explainer):
    """XGBoost's exact TreeSHAP (``pred_contribs``) of a booster's margin; pickles as the booster."""

    method = "tree"

    def __init__(self, booster, iterations: int, n_features: int, classes):
        self.booster, self.iterations = booster, iterations
        contributions = self._contributions(np.zeros((1, n_features), dtype=np.float32))
        self.n_outputs = 1 if contributions.ndim == 2 else contributions.shape[1]
        # The bias column is the same for every row: the base margin of each output.
        self.base_values = np.atleast_1d(contributions[0, ..., -1]).astype(np.float64)
        if classes is None:
            self.output_names = ["prediction"]
        elif self.n_outputs == 1:
            self.output_names = [f"log-odds of class {classes[-1]}"]
        else:
            self.output_names = [f"margin of class {label}" for label in classes]

    def _contributions(self, X):
        import xgboost

        return self.booster.predict(xgboost.DMatrix(X), pred_contribs=True, iteration_range=(0, self.iterations))

    def values(self, X):
        contributions = self._contributions(X)[..., :-1]
        return contributions if contributions.ndim == 2 else np.moveaxis(contributions, 1, 2)

    def outputs(self, X):
        import xgboost

        return self.booster.predict(xgboost.DMatrix(X), output_margin=True, iteration_range=(0, self.iterations))


class _ForestTreeSHAP(_Explainer):
    """``shap.TreeExplainer`` on a fitted scikit-learn forest, built once per process."""

    method = "tree"

    def __init__(self, forest, classes=None):
        self.forest = forest
        self.classify = hasattr(forest, "predict_proba")
        self._explainer = None
        expected = np.atleast_1d(np.asarray(self._shap().expected_value, dtype=np.float64))
        self.base_values = expected
        self.n_outputs = len(expected)
        labels = classes if classes is not None else getattr(forest, "classes_", None)
        self.output_names = [f"probability of class {label}" for label in labels] if self.classify \
            else ["prediction"]

    def _shap(self):
        if self._explainer is None:
            import shap

            self._explainer = shap.TreeExplainer(self.forest)
        return self._explainer

    def values(self, X):
        values = self._shap().shap_values(X, check_additivity=False)
        if isinstance(values, list):  # shap before 0.45: one array per output
            values = np.stack(values, axis=-1)
        values = np.asarray(values)
        return values[..., 0] if values.ndim == 3 and self.n_outputs == 1 else values

    def outputs(self, X):
        return self.forest.predict_proba(X) if self.classify else self.forest.predict(X)

    def __getstate__(self):
        return {**self.__dict__, "_explainer": None}


class _TorchSHAP(_Explainer):
    """captum's DeepLiftShap or GradientShap on a CPU copy of a module, against a fixed background."""

    def __init__(self, module, background: np.ndarray, *, method: str, n_outputs: int, output_names: list,
                 seed: int, n_samples: int = 50):
        import torch

        self.module = copy.deepcopy(module).cpu().eval()
        self.background = np.ascontiguousarray(background, dtype=np.float32)
        self.method, self.n_outputs, self.output_names = method, n_outputs, output_names
        self.seed, self.n_samples = seed, n_samples
        self.base_values = np.atleast_1d(self._forward(self.background).mean(axis=0)).astype(np.float64)

    def _forward(self, X) -> np.ndarray:
        import torch

        with _TORCH_LOCK, torch.no_grad():  # not while another thread's DeepLift hooks sit on the module
            output = self.module(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
        return output.reshape(len(X), -1)

    def outputs(self, X):
        output = self._forward(X).astype(np.float64)
        return output[:, 0] if self.n_outputs == 1 else output

    def values(self, X):
        import warnings

        import torch
        from captum.attr import DeepLiftShap, GradientShap

        background = torch.from_numpy(self.background)
        per_sample = int(np.prod(X.shape[1:])) * len(self.background)
        rows = max(1, _TORCH_BATCH_ELEMENTS // max(per_sample, 1)) if self.method == "deeplift" else 1024
        # captum hooks the module it explains while attributing; a worker may pickle this explainer meanwhile
        # (to hand it to another worker), and a hooked module does not pickle: the hooks go on a copy.
        hooked = copy.deepcopy(self.module)
        if self.method == "deeplift":
            separate_nonlinearities(hooked)
        explainer = (DeepLiftShap if self.method == "deeplift" else GradientShap)(hooked)
        parts = []
        with _TORCH_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum's notes on hooks and on the model's non-linearities
            for start in range(0, len(X), rows):
                inputs = torch.from_numpy(np.ascontiguousarray(X[start:start + rows], dtype=np.float32))
                outputs = []
                for output in range(self.n_outputs):
                    if self.method == "deeplift":
                        attributed = explainer.attribute(inputs, baselines=background, target=output)
                    else:
                        # captum draws baselines with NumPy's global generator and noise with torch's: both
                        # seeded per batch, so the same rows get the same draws on any worker.
                        torch.manual_seed(self.seed + start)
                        state = np.random.get_state()
                        np.random.seed(self.seed + start)
                        try:
                            attributed = explainer.attribute(inputs, baselines=background, target=output,
                                                             n_samples=self.n_samples, stdevs=0.0)
                        finally:
                            np.random.set_state(state)
                    outputs.append(attributed.detach().numpy())
                parts.append(np.stack(outputs, axis=-1) if self.n_outputs > 1 else outputs[0])
        return np.concatenate(parts).astype(np.float32)


class _KernelSHAP(_Explainer):
    """``shap.KernelExplainer`` on a picklable prediction function, with a fixed background and seed."""

    method = "kernel"

    def __init__(self, predict, background: np.ndarray, *, output_names: list, seed: int, nsamples):
        self.predict, self.background, self.seed, self.nsamples = predict, background, seed, nsamples
        self._explainer = None
        expected = np.atleast_1d(np.asarray(self._shap().expected_value, dtype=np.float64))
        self.base_values, self.n_outputs = expected, len(expected)
        self.output_names = output_names if len(output_names) == self.n_outputs else \
            [f"output {index}" for index in range(self.n_outputs)]

    def _shap(self):
        if self._explainer is None:
            import shap

            self._explainer = shap.KernelExplainer(self.predict, self.background)
        return self._explainer

    def outputs(self, X):
        return np.asarray(self.predict(X), dtype=np.float64)

    def values(self, X):
        with _KERNEL_LOCK:
            state = np.random.get_state()
            np.random.seed(self.seed)
            try:
                values = self._shap().shap_values(X, nsamples=self.nsamples, silent=True)
            finally:
                np.random.set_state(state)
        if isinstance(values, list):
            values = np.stack(values, axis=-1)
        return np.asarray(values, dtype=np.float64)

    def __getstate__(self):
        return {**self.__dict__, "_explainer": None}


class _Probabilities:
    """A picklable ``predict_proba`` (or ``predict``) of an estimator, as KernelSHAP and LIME call it."""

    def __init__(self, model, method: str):
        self.model, self.method = model, method

    def __call__(self, X):
        return np.asarray(getattr(self.model, self.method)(np.asarray(X, dtype=np.float32)))


def torch_module(model):
    """The ``nn.Module`` inside a Trainer or a fitted torch estimator (or the module itself); else None."""
    import torch

    from bigdl.train import Trainer

    if isinstance(model, Trainer):
        return model.model
    module = getattr(model, "module_", None)
    if isinstance(module, torch.nn.Module):
        return module
    return model if isinstance(model, torch.nn.Module) else None


def model_family(model) -> str:
    """``"xgb"``, ``"forest"``, ``"torch"`` or ``"estimator"``: which explainer :func:`shap_values` uses.

    Raises SchemaError for an object that is none of them (no ``predict``).
    """
    if hasattr(model, "booster_"):
        return "xgb"
    if hasattr(model, "forest_"):
        return "forest"
    if torch_module(model) is not None:
        return "torch"
    if hasattr(model, "predict"):
        return "estimator"
    raise SchemaError(f"Cannot explain a {type(model).__name__}: it needs a predict method (a fitted estimator), "
                      "or be a Trainer, a torch estimator or a torch.nn.Module.")


def _explainer(model, ds: Dataset, *, method: str, background: int, seed: int, nsamples) -> _Explainer:
    from sklearn.utils.validation import check_is_fitted

    family = model_family(model)
    classes = ds.classes
    if method == "auto":
        method = {"xgb": "tree", "forest": "tree", "torch": "deeplift", "estimator": "kernel"}[family]
    allowed = {"xgb": ("tree",), "forest": ("tree",), "torch": ("deeplift", "gradient"),
               "estimator": ("kernel",)}[family]
    if method not in allowed:
        raise SchemaError(f"shap_values: method={method!r} does not apply to a {type(model).__name__}; it takes "
                          f"{['auto', *allowed]}.")
    if family in ("xgb", "forest", "estimator") and len(ds.sample_shape) != 1:
        raise SchemaError(f"shap_values: a {type(model).__name__} explains rows of features, but the store "
                          f"{str(ds.path)!r} has samples of shape {ds.sample_shape}; use a torch model.")
    if family in ("xgb", "forest", "estimator"):
        expected = getattr(model, "n_features_in_", None)
        if expected is not None and expected != ds.n_features:
            raise SchemaError(f"The model was fitted on {expected} features but the store has {ds.n_features}.")
    if family == "xgb":
        check_is_fitted(model, "booster_")
        return _XGBContributions(model.booster_, model.best_iteration_ + 1, ds.n_features,
                                 classes if ds.task == "classification" else None)
    if family == "forest":
        check_is_fitted(model, "forest_")
        return _ForestTreeSHAP(model.forest_, classes if ds.task == "classification" else None)
    sample, _ = random_rows(ds, "train", background, seed)
    if family == "torch":
        from bigdl.train._trainer import _output_shape

        module = torch_module(model)
        width = int(np.prod(_output_shape(copy.deepcopy(module).cpu().eval(), ds.sample_shape)))
        names = [f"logit of class {label}" for label in classes] if classes is not None and width == len(classes) \
            else ["output"] if width == 1 else [f"output {index}" for index in range(width)]
        return _TorchSHAP(module, sample, method=method, n_outputs=width, output_names=names, seed=seed)
    proba = ds.task == "classification" and hasattr(model, "predict_proba")
    names = [f"probability of class {label}" for label in classes] if proba else ["prediction"]
    return _KernelSHAP(_Probabilities(model, "predict_proba" if proba else "predict"), sample,
                       output_names=names, seed=seed, nsamples=nsamples)


# ------------------------------------------------------------------ the result
@dataclass
class ShapExplanation:
    """SHAP values of a split's samples: lazy per-sample values, base values, and the global importance.

    What :func:`shap_values` returns.  ``values[i].sum() + base_values``
    (per output) is the model's output for sample ``i`` (local additivity),
    within :attr:`additivity_error`.

    Attributes
    ----------
    values : dask.array.Array
        Shape ``(n_samples, *sample_shape)`` for one output, or
        ``(n_samples, *sample_shape, n_outputs)``; one block per store chunk,
        computed on the workers when asked (``.compute()``, ``[:100].compute()``).
    base_values : numpy.ndarray of shape (n_outputs,)
        The expected output each sample's values start from.
    data : dask.array.Array
        The samples explained, as the model saw them (normalised images...).
    feature_names : list of str
        One per value of a sample (images: ``"c0 y3 x5"``).
    output_names : list of str
        What each output is (``"log-odds of class 1"``, ``"probability of class 2"``, ``"logit of class 7"``).
    method : str
        ``"tree"``, ``"deeplift"``, ``"gradient"`` or ``"kernel"``.
    mean_abs : numpy.ndarray
        Mean |SHAP| per value of a sample (shape ``sample_shape``), averaged over outputs: the global importance,
        summed chunk by chunk.
    mean_abs_per_output : numpy.ndarray
        The same per output, shape ``(*sample_shape, n_outputs)``.
    additivity_error : float
        The largest ``|output - base - sum(values)|`` over the explained samples.
    output_scale : float
        The standard deviation of the explained outputs (to read :attr:`additivity_error` against).
    n_samples : int
    split : str
    sample_shape : tuple of int
    """

    values: object
    base_values: np.ndarray
    data: object
    feature_names: list
    output_names: list
    method: str
    mean_abs: np.ndarray
    mean_abs_per_output: np.ndarray
    additivity_error: float
    output_scale: float
    n_samples: int
    split: str
    sample_shape: tuple
    _explainer: object = field(default=None, repr=False)

    @property
    def n_outputs(self) -> int:
        """Outputs explained (1: ``values`` has no output axis)."""
        return len(self.base_values)

    def importance(self) -> pd.DataFrame:
        """Global importance: mean |SHAP| per feature, largest first.

        Returns
        -------
        pandas.DataFrame
            ``feature``, ``mean_abs_shap`` (averaged over outputs) and one
            ``mean_abs_shap[<output>]`` column per output when there are several.
        """
        frame = pd.DataFrame({"feature": self.feature_names, "mean_abs_shap": self.mean_abs.reshape(-1)})
        if self.n_outputs > 1:
            per_output = self.mean_abs_per_output.reshape(-1, self.n_outputs)
            for index, name in enumerate(self.output_names):
                frame[f"mean_abs_shap[{name}]"] = per_output[:, index]
        frame = frame.sort_values("mean_abs_shap", ascending=False, kind="stable").reset_index(drop=True)
        frame.attrs["method"] = self.method
        return frame

    def to_shap(self, rows=slice(0, 1000), output: int | None = None):
        """Some rows as an in-memory ``shap.Explanation``, for shap's own plots and tools.

        Parameters
        ----------
        rows : slice or array of int, default the first 1,000
            Positions among the explained samples; computed now (only these rows).
        output : int, optional
            One output's values (the last by default when there are several;
            for a binary classifier that is the positive class).

        Returns
        -------
        shap.Explanation
            ``values`` and ``data`` flattened to ``(rows, n_features)``,
            ``base_values`` per row, ``feature_names``.
        """
        import dask
        import shap

        values, data = dask.compute(self.values[rows], self.data[rows])
        values, output = self._one_output(values, output)
        count = len(values)
        return shap.Explanation(values=values.reshape(count, -1).astype(np.float64),
                                base_values=np.full(count, float(self.base_values[output])),
                                data=data.reshape(count, -1), feature_names=list(self.feature_names),
                                output_names=self.output_names[output])

    def _one_output(self, values: np.ndarray, output: int | None):
        if self.n_outputs == 1:
            return values, 0
        output = self.n_outputs - 1 if output is None else int(output)
        if not 0 <= output < self.n_outputs:
            raise SchemaError(f"output={output} but the explanation has {self.n_outputs} outputs "
                              f"({self.output_names}).")
        return values[..., output], output

    def outputs(self, rows=slice(0, 1000)) -> np.ndarray:
        """The model's outputs that the values of ``rows`` add up to (computed now, in this process).

        Parameters
        ----------
        rows : slice or array of int, default the first 1,000

        Returns
        -------
        numpy.ndarray of shape (rows,) or (rows, n_outputs)
        """
        return self._explainer.outputs(np.asarray(self.data[rows].compute()))


# ------------------------------------------------------------------ the pass
def shap_values(model, ds, split: str = "test", max_samples: int | None = None, background: int = 100,
                seed: int = 0, *, method: str = "auto", nsamples="auto", progress: bool = True,
                client=None) -> ShapExplanation:
    """SHAP values of a split's samples, chunk by chunk, with their global importance.

    Parameters
    ----------
    model : fitted XGBClassifier/XGBRegressor, ChunkForest, Trainer, TorchClassifier/TorchRegressor, torch.nn.Module
            or estimator
        See the module's notes for which explainer each gets.
    ds : Dataset or str
        The store, read through its sample view (the samples the model was trained on).
    split : {"train", "validation", "test", "all"}, default "test"
    max_samples : int, optional
        Explain only the split's first ``max_samples`` samples (store order,
        which is shuffled at ingest: a fair sample).  Default all, except
        KernelSHAP: at most :data:`KERNEL_MAX_SAMPLES`.
    background : int, default 100
        Train samples drawn by ``seed`` as the reference (torch and KernelSHAP;
        TreeSHAP needs none).  Memory and time grow with it.
    seed : int, default 0
        The background's draw, GradientShap's noise and KernelSHAP's coalitions.
    method : {"auto", "tree", "deeplift", "gradient", "kernel"}, default "auto"
        ``"auto"``: tree for XGB and ChunkForest, deeplift for torch models,
        kernel for other estimators; torch models also take ``"gradient"``.
    nsamples : int or "auto", default "auto"
        KernelSHAP's model evaluations per row (``shap.KernelExplainer``'s ``nsamples``).
    progress : bool, default True
        A progress bar over the chunks.
    client : distributed.Client, optional
        Default: the current client, else Dask's threaded scheduler.

    Returns
    -------
    ShapExplanation

    Raises
    ------
    ParameterError
        A parameter out of its range or an unknown ``split`` / ``method``.
    SchemaError
        A model that cannot be explained (or not by ``method``), a model
        fitted on another number of features, an empty split.

    Examples
    --------
    >>> explanation = shap_values(booster, ds, max_samples=5000)     # doctest: +SKIP
    >>> explanation.importance().head()                              # doctest: +SKIP
    >>> explanation.values[:10].compute()                            # doctest: +SKIP
    """
    from bigdl.loaders._predict import predict_blocks
    from bigdl.runtime._tasks import active_client, run_tasks

    check_params("shap_values", {"max_samples": max_samples, "background": background, "seed": seed,
                                 "method": method, "nsamples": nsamples},
                 {"max_samples": [Interval(int, 1, None), None], "background": [Interval(int, 1, None)],
                  "seed": [Interval(int, 0, None)], "method": [Options(METHODS)],
                  "nsamples": [Interval(int, 1, None), Options(("auto",))]})
    check_split(split, owner="shap_values")
    ds = ds if isinstance(ds, Dataset) else open_store(ds)
    explainer = _explainer(model, ds, method=method, background=background, seed=seed, nsamples=nsamples)
    if explainer.method == "kernel" and max_samples is None:
        max_samples = KERNEL_MAX_SAMPLES
        logger.info("KernelSHAP explains the first %d samples of the %r split (pass max_samples= to change it).",
                    max_samples, split)
    plan = first_rows(ds, split, max_samples)
    if not plan:
        raise SchemaError(f"shap_values has nothing to explain in the store {str(ds.path)!r}: "
                          f"{ds.view.why_empty(split)}.")
    n_samples = sum(rows for _, rows in plan)
    client = active_client(client)
    shipped = client.scatter(explainer, broadcast=True, hash=False) if client is not None else explainer
    arguments = [(str(ds.path), chunk, split, rows, shipped) for chunk, rows in plan]
    sums = run_tasks("bigdl-explain-shap", _chunk_sums, arguments, desc=f"SHAP ({explainer.method})",
                     progress=progress, client=client)
    total_abs = np.sum([item["abs"] for item in sums], axis=0)
    moments = np.sum([item["moments"] for item in sums], axis=0)
    variance = moments[1] / n_samples - (moments[0] / n_samples) ** 2
    X, _ = ds.arrays(split)
    X = X[:n_samples]
    tail = tuple(ds.sample_shape) + ((explainer.n_outputs,) if explainer.n_outputs > 1 else ())
    values = predict_blocks(_values_of, X, model=shipped, tail=tail, dtype=np.float32, name="bigdl-explain-shap")
    per_output = total_abs / n_samples
    if explainer.n_outputs == 1:
        per_output = per_output[..., None]
    return ShapExplanation(
        values=values, base_values=explainer.base_values, data=X, feature_names=_names(ds),
        output_names=list(explainer.output_names), method=explainer.method, mean_abs=per_output.mean(axis=-1),
        mean_abs_per_output=per_output, additivity_error=float(max(item["error"] for item in sums)),
        output_scale=float(np.sqrt(max(float(np.mean(variance)), 0.0))), n_samples=n_samples, split=split,
        sample_shape=tuple(ds.sample_shape), _explainer=explainer)


def _names(ds: Dataset) -> list[str]:
    if len(ds.sample_shape) == 1 and len(ds.feature_names) == ds.sample_shape[0]:
        return list(ds.feature_names)
    if len(ds.sample_shape) == 3:
        channels, height, width = ds.sample_shape
        return [f"c{c} y{y} x{x}" for c in range(channels) for y in range(height) for x in range(width)]
    return [f"x{index}" for index in range(int(np.prod(ds.sample_shape)))]


def _values_of(explainer, X):
    return explainer.values(X)


def _chunk_sums(path: str, chunk: int, split: str, rows: int, explainer) -> dict:
    """One chunk's |SHAP| sums, output moments and largest additivity error (runs in a Dask task)."""
    X, _ = open_store(path).read_chunk(chunk, split)
    X = X[:rows]
    values = np.asarray(explainer.values(X), dtype=np.float64)
    outputs = np.asarray(explainer.outputs(X), dtype=np.float64).reshape(len(X), -1)
    flat = values.reshape(len(X), -1, explainer.n_outputs)
    error = np.abs(outputs - explainer.base_values - flat.sum(axis=1))
    return {"abs": np.abs(values).sum(axis=0), "error": float(error.max()),
            "moments": np.array([outputs.sum(axis=0), (outputs ** 2).sum(axis=0)])}
