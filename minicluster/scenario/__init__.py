"""Scenario files: what ``minicluster run-scenario`` runs, and the job files of ``submit-job``.

The public names are the loader's (one list, kept in ``minicluster.scenario.loader``) and the
duration helpers.
"""

from minicluster.scenario import loader
from minicluster.scenario.durations import format_duration, parse_duration
from minicluster.scenario.loader import *  # noqa: F403 - re-exports exactly loader.__all__

__all__ = [*loader.__all__, "format_duration", "parse_duration"]
