"""Pretraining runs and studies from TOML config files (``python -m cxr_curriculum``).

Public names::

    load_run, PretrainRun        # a pretraining config -> Curriculum + Backbone
    load_study                   # a study config -> cxr_curriculum.study.Study
    read_toml, ConfigError       # parsing, and the error naming the key at fault
    launch_study, SlurmOptions   # a study's units to Slurm or local workers (extra 'cluster')
    Launch, LaunchError          # what was submitted; a local worker job that failed
    ClusterSupportError          # submitit missing (names the extra)

See ``docs/study.md`` ("Config files", "Run it on a cluster").
"""

from cxr_curriculum.config.files import PretrainRun, load_run, load_study, read_toml
from cxr_curriculum.config.keys import ConfigError
from cxr_curriculum.config.launch import (
    ClusterSupportError,
    Launch,
    LaunchError,
    SlurmOptions,
    launch_study,
)

__all__ = [
    "ClusterSupportError",
    "ConfigError",
    "Launch",
    "LaunchError",
    "PretrainRun",
    "SlurmOptions",
    "launch_study",
    "load_run",
    "load_study",
    "read_toml",
]
