"""Hand a study's units to a job engine: Slurm or local processes through submitit.

The library does not schedule; it hands its units (:mod:`cxr_curriculum.study.units`)
to an engine that exists, as Hydra's submitit launcher and the detectron2 / fairseq
scripts do. Needs the optional extra ``cluster`` (``pip install
"cxr_curriculum[cluster]"``: submitit), imported only here.

- ``launcher="slurm"`` submits one Slurm array task per unfinished unit, each running
  ``Study.run(unit=K)`` on the study file (as ``study FILE --unit K`` does), at most
  ``max_parallel`` at once, and returns with the job ids. Units already claimed by a
  live worker are left to it. The array task that completes the study writes the
  report (else ``study FILE --report-only``).
- ``launcher="local"`` starts ``max_parallel`` worker processes through submitit's
  ``LocalExecutor`` (each runs ``Study.run_worker()`` and claims units until none is
  left) and waits for them; the worker that completes the study writes the report (the
  launcher writes it when none did, e.g. when nothing was left to do).

Jobs run in the current directory (relative paths in the study file keep their
meaning) with the Python interpreter of the submitting process; their logs go to
``<output>/jobs/<job id>/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLUSTER_EXTRA_HINT",
    "ClusterSupportError",
    "Launch",
    "LaunchError",
    "SlurmOptions",
    "launch_study",
]

#: How to install the launchers' dependency; quoted by the error when it is missing.
CLUSTER_EXTRA_HINT = 'pip install "cxr_curriculum[cluster]"'
LAUNCHERS = ("local", "slurm")


class ClusterSupportError(ImportError):
    """submitit is not installed (the message says how to install the extra)."""


class LaunchError(RuntimeError):
    """A local worker job failed; the message names the job, its log and the last error line."""


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as err:
        raise ClusterSupportError(
            f"launching a study's units needs submitit, the optional extra 'cluster': "
            f"{CLUSTER_EXTRA_HINT}"
        ) from err
    return submitit


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of one Slurm array task (one unit); passed to submitit unchanged.

    Attributes:
        partition: Slurm partition (``--partition``).
        gpus_per_unit: GPUs per task (``--gpus-per-node``; 0 for none).
        cpus_per_unit: CPU cores per task (``--cpus-per-task``).
        time: Time limit per task in minutes (``--time``).
        mem: Memory per task, e.g. ``"32G"`` (``--mem``).
        account: Slurm account (``--account``).
        extra: Further sbatch options, e.g. ``{"qos": "high"}`` (``--qos=high``).
        setup: Shell lines run before the job (``module load ...``).
    """

    partition: str | None = None
    gpus_per_unit: int = 0
    cpus_per_unit: int | None = None
    time: int = 24 * 60
    mem: str | None = None
    account: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    setup: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.gpus_per_unit < 0:
            raise ValueError(f"gpus_per_unit must be >= 0; got {self.gpus_per_unit}")
        if self.cpus_per_unit is not None and self.cpus_per_unit < 1:
            raise ValueError(f"cpus_per_unit must be >= 1; got {self.cpus_per_unit}")
        if self.time < 1:
            raise ValueError(f"time must be >= 1 minute; got {self.time}")

    def parameters(self) -> dict[str, Any]:
        """The ``SlurmExecutor.update_parameters`` keywords."""
        out: dict[str, Any] = {"time": self.time}
        named = {
            "partition": self.partition,
            "gpus_per_node": self.gpus_per_unit or None,
            "cpus_per_task": self.cpus_per_unit,
            "mem": self.mem,
            "account": self.account,
        }
        out.update({k: v for k, v in named.items() if v is not None})
        if self.extra:
            out["additional_parameters"] = dict(self.extra)
        if self.setup:
            out["setup"] = list(self.setup)
        return out


@dataclass
class Launch:
    """What a launch submitted.

    Attributes:
        launcher: ``"local"`` or ``"slurm"``.
        units: The unit indices handed to the engine (Slurm), or worked on (local).
        job_ids: The engine's job ids (``"12345_0"``, ... for a Slurm array).
        folder: Where submitit keeps the jobs' files and logs.
        output: The study's output folder (where ``report.md`` is written).
        jobs: submitit's job objects.
    """

    launcher: str
    units: list[int]
    job_ids: list[str]
    folder: Path
    output: Path
    jobs: list[Any] = field(default_factory=list)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run_unit_job(config: str, unit: int, cwd: str, claim_timeout: float | None) -> dict[str, Any]:
    """A Slurm array task: ``Study.run(unit=unit)`` on the study file ``config``."""
    from cxr_curriculum.config.files import load_study

    os.chdir(cwd)
    _logging()
    study = load_study(config)
    kw = {} if claim_timeout is None else {"claim_timeout": claim_timeout}
    study.run(unit=unit, **kw)
    return {"unit": unit, "reported": study.reported}


def run_worker_job(
    config: str, worker: int, cwd: str, claim_timeout: float | None
) -> dict[str, Any]:
    """A local worker job: ``Study.run_worker()`` on the study file ``config``."""
    from cxr_curriculum.config.files import load_study

    os.chdir(cwd)
    _logging()
    study = load_study(config)
    kw = {} if claim_timeout is None else {"claim_timeout": claim_timeout}
    study.run_worker(**kw)
    return {"worker": worker, "reported": study.reported}


def launch_study(
    config: str | os.PathLike[str],
    launcher: str = "local",
    *,
    max_parallel: int = 1,
    slurm: SlurmOptions | None = None,
    claim_timeout: float | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> Launch:
    """Submit a study's unfinished units to Slurm, or run them in local worker processes.

    The study file is read and its output folder checked (a folder of a different study
    is refused) before anything is submitted.

    Args:
        config: The study's TOML file.
        launcher: ``"slurm"`` (submit and return) or ``"local"`` (run, wait, report).
        max_parallel: Slurm: array tasks running at once; local: worker processes.
        slurm: Resources of each Slurm task.
        claim_timeout: Seconds without a heartbeat after which a claim is stale.
        folder: submitit's folder (default ``<output>/jobs``).

    Returns:
        The :class:`Launch`.

    Raises:
        ClusterSupportError: submitit is not installed.
        ConfigError: The study file is invalid.
        StudyFolderError: The output folder belongs to a different study.
        LaunchError: A local worker job failed (the message names its log).
    """
    from cxr_curriculum.config.files import load_study
    from cxr_curriculum.study.claims import DEFAULT_CLAIM_TIMEOUT, check_claim_timeout
    from cxr_curriculum.study.design import check_design

    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}; got {launcher!r}")
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1; got {max_parallel}")
    if claim_timeout is not None:  # before the output folder is touched
        check_claim_timeout(claim_timeout)
    submitit = _submitit()
    path = str(Path(config).resolve())
    study = load_study(path)
    check_design(study)
    timeout = DEFAULT_CLAIM_TIMEOUT if claim_timeout is None else claim_timeout
    statuses = study.unit_status(timeout)
    jobs_folder = Path(folder) if folder is not None else study.output / "jobs"
    cwd = os.getcwd()
    if launcher == "slurm":
        todo = [s.unit.index for s in statuses if s.state in ("to do", "stale")]
        if not todo:
            return Launch(launcher, [], [], jobs_folder, study.output)
        executor = submitit.SlurmExecutor(folder=jobs_folder / "%j")
        executor.update_parameters(
            job_name="cxr-study", array_parallelism=max_parallel,
            **(slurm or SlurmOptions()).parameters(),
        )  # fmt: skip
        n = len(todo)
        jobs = executor.map_array(run_unit_job, [path] * n, todo, [cwd] * n, [claim_timeout] * n)
        return Launch(
            launcher, todo, [j.job_id for j in jobs], jobs_folder, study.output, list(jobs)
        )
    todo = [s.unit.index for s in statuses if s.state not in ("done", "not measured")]
    jobs = []
    if todo:
        n = min(max_parallel, len(todo))
        executor = submitit.LocalExecutor(folder=jobs_folder / "%j")
        executor.update_parameters(timeout_min=(slurm or SlurmOptions()).time)
        timeouts = [claim_timeout] * n
        jobs = executor.map_array(run_worker_job, [path] * n, range(n), [cwd] * n, timeouts)
        done = []
        for job in jobs:
            try:
                done.append(job.result())
            except Exception as err:
                raise LaunchError(
                    f"local worker job {job.job_id} failed (log: {job.paths.stderr}): "
                    f"{str(err).strip().splitlines()[-1] if str(err).strip() else err!r}"
                ) from err
        if any(r.get("reported") for r in done):
            return Launch(
                launcher, todo, [j.job_id for j in jobs], jobs_folder, study.output, list(jobs)
            )
    study.write_report()  # no worker completed the study here (or there was nothing to do)
    return Launch(launcher, todo, [j.job_id for j in jobs], jobs_folder, study.output, list(jobs))
