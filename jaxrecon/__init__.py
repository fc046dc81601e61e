"""jaxrecon: how much a deleted record leaks when a model is unlearned (HRec, baselines, JAX)."""

__version__ = "0.1.0"

from jaxrecon.attacks import AttackResult as AttackResult
from jaxrecon.attacks import avg as avg
from jaxrecon.attacks import hrec as hrec
from jaxrecon.attacks import maxdiff as maxdiff
from jaxrecon.attacks import public_hessian_matvec as public_hessian_matvec
from jaxrecon.data import Dataset as Dataset
from jaxrecon.data import Split as Split
from jaxrecon.data import dataset_status as dataset_status
from jaxrecon.data import load_dataset as load_dataset
from jaxrecon.data import load_digits as load_digits
from jaxrecon.data import split as split
from jaxrecon.data import standardize as standardize
from jaxrecon.data import synthetic_classification as synthetic_classification
from jaxrecon.data import synthetic_regression as synthetic_regression
from jaxrecon.data import task_view as task_view
from jaxrecon.errors import InputError as InputError
from jaxrecon.features import FeatureMap as FeatureMap
from jaxrecon.features import identity_features as identity_features
from jaxrecon.metrics import cosine_similarity as cosine_similarity
from jaxrecon.models import Model as Model
from jaxrecon.models import logistic_model as logistic_model
from jaxrecon.models import make_model as make_model
from jaxrecon.models import ridge_model as ridge_model
from jaxrecon.models import softmax_model as softmax_model
from jaxrecon.pipeline import RunConfig as RunConfig
from jaxrecon.pipeline import run as run
from jaxrecon.pipeline import write_outputs as write_outputs
from jaxrecon.solvers import FitResult as FitResult
from jaxrecon.solvers import fit_newton as fit_newton
from jaxrecon.solvers import fit_ridge as fit_ridge
from jaxrecon.unlearning import UnlearnResult as UnlearnResult
from jaxrecon.unlearning import deletion_masks as deletion_masks
from jaxrecon.unlearning import unlearn_retrain as unlearn_retrain
from jaxrecon.unlearning import unlearn_ridge as unlearn_ridge
