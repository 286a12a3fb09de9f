"""``fnn.diagnostics``: why a network trains or does not: per-layer gradient and delta norms,
saturation, dead relus and update-to-weight ratios.

A public namespace: its names are defined in ``fnn.training.diagnostics``, where their
documentation lives.
"""

from fnn.training.diagnostics import KEYS as KEYS
from fnn.training.diagnostics import PROBE as PROBE
from fnn.training.diagnostics import SATURATION as SATURATION
from fnn.training.diagnostics import append as append
from fnn.training.diagnostics import dead_fraction as dead_fraction
from fnn.training.diagnostics import deltas as deltas
from fnn.training.diagnostics import layer_stats as layer_stats
from fnn.training.diagnostics import probe_batch as probe_batch
from fnn.training.diagnostics import record as record
from fnn.training.diagnostics import saturation as saturation
from fnn.training.diagnostics import summary as summary
from fnn.training.diagnostics import to_csv as to_csv
from fnn.training.diagnostics import update_ratio as update_ratio

__all__ = [
    "KEYS",
    "PROBE",
    "SATURATION",
    "append",
    "dead_fraction",
    "deltas",
    "layer_stats",
    "probe_batch",
    "record",
    "saturation",
    "summary",
    "to_csv",
    "update_ratio",
]
