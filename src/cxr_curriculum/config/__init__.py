"""Pretraining runs and studies from TOML config files (``python -m cxr_curriculum``).

Public names::

    load_run, PretrainRun        # a pretraining config -> Curriculum + Backbone
    load_study                   # a study config -> cxr_curriculum.study.Study
    read_toml, ConfigError       # parsing, and the error naming the key at fault

See ``docs/study.md`` ("Config files").
"""

from cxr_curriculum.config.files import PretrainRun, load_run, load_study, read_toml
from cxr_curriculum.config.keys import ConfigError

__all__ = ["ConfigError", "PretrainRun", "load_run", "load_study", "read_toml"]
