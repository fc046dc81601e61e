"""The main job's public names in one place (`jaxrecon run` from Python).

    from jaxrecon import pipeline
    result = pipeline.run(pipeline.RunConfig(model="logistic", n_train=500, deletions=50))
    print(pipeline.format_table(result.summary))
    pipeline.write_outputs(result, "runs/logistic")

The implementation lives by concern: `config` (options and their validation), `engine` (the
chunked, sharded, resumable loop over the composition layer `scenario`), `store` (atomic files,
chunks) and `report` (summary, tables, figures). This module only re-exports them.
"""

from jaxrecon.config import ATTACKS as ATTACKS
from jaxrecon.config import DEFAULT_ATTACKS as DEFAULT_ATTACKS
from jaxrecon.config import DTYPES as DTYPES
from jaxrecon.config import FEATURES as FEATURES
from jaxrecon.config import UNLEARNING_METHODS as UNLEARNING_METHODS
from jaxrecon.config import RunConfig as RunConfig
from jaxrecon.config import config_hash as config_hash
from jaxrecon.engine import run as run
from jaxrecon.report import RunResult as RunResult
from jaxrecon.report import format_table as format_table
from jaxrecon.report import rows_to_csv as rows_to_csv
from jaxrecon.report import write_outputs as write_outputs
from jaxrecon.scenario import DENSE_LIMIT as DENSE_LIMIT
from jaxrecon.scenario import EXACT_TOL as EXACT_TOL
from jaxrecon.scenario import task_labels as task_labels
from jaxrecon.store import atomic_write as atomic_write
from jaxrecon.store import prepare_out_dir as prepare_out_dir
from jaxrecon.store import text_writer as text_writer
from jaxrecon.unlearners import DENSE_UNLEARN_LIMIT as DENSE_UNLEARN_LIMIT
