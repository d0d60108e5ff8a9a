"""Statistics shared by evaluation, attention, studies and stage-order ranking.

One clustered bootstrap, one interval class and one paired-comparison class for the
whole package (it depends on torch only; ``evaluation``, ``attention`` and ``study``
all import it, none keeps its own copy):

- resampling: :func:`cluster_codes`, :func:`resample_clusters`,
  :func:`expand_clusters`, :func:`bootstrap_indices` (whole patients when cluster ids
  are given; Field & Welsh, JRSS-B 2007);
- any statistic: :func:`bootstrap_replicates` (scalar or vector statistics),
  :func:`bootstrap_ci` -> :class:`ConfidenceInterval` (percentile interval);
- paired tests: :func:`paired_bootstrap` -> :class:`PairedComparison`, with the one
  p-value definition :func:`bootstrap_p_value`;
- means of per-item values, vectorised: :func:`mean_ci`, :func:`compare_means`;
- DeLong's test for correlated AUROCs: :func:`delong_test`;
- means over training seeds on a shared test set: :func:`seed_interval`,
  :func:`seed_comparison` (Weerahandi's generalized interval on the seed and test-set
  variance components of :func:`seed_components`; Student's t with ``S - 1`` degrees
  of freedom when seeds dominate), whose p-value :func:`seed_p_value` inverts it and
  has no floor;
- multiplicity: :func:`holm` and :func:`benjamini_hochberg` adjusted p-values.

See ``docs/evaluation.md`` ("Statistics") and ``docs/study.md`` ("Statistics across
runs") for what the intervals cover.
"""

from cxr_curriculum.stats.bootstrap import (
    Replicates,
    Statistic,
    bootstrap_ci,
    bootstrap_replicates,
)
from cxr_curriculum.stats.delong import DeLongResult, delong_components, delong_test, midranks
from cxr_curriculum.stats.intervals import ConfidenceInterval, percentile_interval
from cxr_curriculum.stats.means import compare_means, mean_ci
from cxr_curriculum.stats.multiplicity import benjamini_hochberg, holm
from cxr_curriculum.stats.paired import PairedComparison, bootstrap_p_value, paired_bootstrap
from cxr_curriculum.stats.resample import (
    Groups,
    bootstrap_indices,
    cluster_codes,
    expand_clusters,
    resample_clusters,
)
from cxr_curriculum.stats.seeds import (
    SeedComponents,
    seed_comparison,
    seed_components,
    seed_interval,
    seed_p_value,
)

__all__ = [
    "ConfidenceInterval",
    "DeLongResult",
    "Groups",
    "PairedComparison",
    "Replicates",
    "SeedComponents",
    "Statistic",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_p_value",
    "bootstrap_replicates",
    "cluster_codes",
    "compare_means",
    "delong_components",
    "delong_test",
    "expand_clusters",
    "holm",
    "mean_ci",
    "midranks",
    "paired_bootstrap",
    "percentile_interval",
    "resample_clusters",
    "seed_comparison",
    "seed_components",
    "seed_interval",
    "seed_p_value",
]
