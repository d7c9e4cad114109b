"""serverlab: which way of serving a Flask app is fastest, and why.

Subpackages by job: :mod:`serverlab.terms` (the lab's vocabulary: modes, worker
models, HDR settings, the workloads; shared with the app and the locustfile),
:mod:`serverlab.experiment` (what to run),
:mod:`serverlab.runner` (running it fairly; :mod:`serverlab.planning`,
:mod:`serverlab.runfolders`, :mod:`serverlab.progress` and :mod:`serverlab.cpuwatch`
beside it), :mod:`serverlab.backends` (the :class:`~serverlab.backends.Backend`
interface; Docker or local processes), :mod:`serverlab.loadgen` (Locust and wrk), :mod:`serverlab.results`
(the one result row type and its JSON-lines files), :mod:`serverlab.stats` and
:mod:`serverlab.report` (analysis and rendering), :mod:`serverlab.cli` (commands).
"""

__version__ = "0.1.0"


class LabError(Exception):
    """Base class of every error serverlab reports to a user as ``error: ...``."""
