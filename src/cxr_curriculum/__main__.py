"""Command line: ``python -m cxr_curriculum pretrain RUN.toml`` / ``study STUDY.toml``.

Both commands run unchanged under ``torchrun --nproc_per_node N -m cxr_curriculum ...``:
the :class:`~cxr_curriculum.Curriculum` joins the process group torchrun describes, and
only rank 0 writes checkpoints, cells and reports.

``study`` spreads over processes and machines by units (one per arm and seed, see
``docs/study.md``, "Run it on a cluster"): ``--list-units``, ``--unit K``, ``--worker``,
``--launcher local|slurm``. Every error the library expects (an invalid file, a damaged
or foreign output folder, an unreadable image, a full or read-only disk) is printed as
one ``error: ...`` line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _claim_timeout(text: str) -> float:
    from cxr_curriculum.study.claims import check_claim_timeout

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    try:
        return check_claim_timeout(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
        return value

    return parse


def _study_parser(sub: Any) -> None:
    st = sub.add_parser("study", help="run (or resume) a study config")
    st.add_argument("config", help="the study's TOML file")
    what = st.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="validate the file and exit")
    what.add_argument(
        "--report-only",
        action="store_true",
        help="write results.json/report.md from whatever cells are finished",
    )
    what.add_argument(
        "--list-units",
        action="store_true",
        help="print every unit (arm x seed): its cells, state, claim and the time left",
    )
    what.add_argument("--unit", type=int, metavar="K", help="compute unit K only")
    what.add_argument(
        "--worker",
        action="store_true",
        help="one of several processes on this output folder: claim units until none is left",
    )
    what.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        help="hand the units to submitit (extra 'cluster'): local processes or a Slurm array",
    )
    st.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    st.add_argument(
        "--claim-timeout",
        type=_claim_timeout,
        default=None,
        metavar="SECONDS",
        help="a claim not renewed for this long is stale and taken over (default 300)",
    )
    lg = st.add_argument_group("launcher options (--launcher)")
    lg.add_argument(
        "--max-parallel",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="units (or workers) at once",
    )
    lg.add_argument("--partition", help="Slurm partition")
    lg.add_argument(
        "--gpus-per-unit", type=_int_at_least(0), default=0, metavar="G", help="GPUs per unit"
    )
    lg.add_argument(
        "--cpus-per-unit", type=_int_at_least(1), default=None, metavar="C", help="CPU cores"
    )
    lg.add_argument(
        "--time", type=_int_at_least(1), default=24 * 60, metavar="MIN", help="minutes per unit"
    )
    lg.add_argument("--mem", default=None, help="memory per unit, e.g. 32G")
    lg.add_argument("--account", default=None, help="Slurm account")
    lg.add_argument(
        "--slurm-option",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any further sbatch option, e.g. qos=high (repeatable)",
    )
    lg.add_argument(
        "--slurm-setup",
        action="append",
        default=[],
        metavar="LINE",
        help="a shell line run before each job, e.g. 'module load cuda' (repeatable)",
    )
    lg.add_argument("--jobs-folder", default=None, help="submitit's folder (default OUTPUT/jobs)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxr_curriculum",
        description="Curricular SSL pretraining and multi-seed studies from TOML config files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("pretrain", help="run a pretraining config (stages, data, budget, seed)")
    pre.add_argument("config", help="the run's TOML file")
    pre.add_argument("--check", action="store_true", help="validate the file and exit")
    _study_parser(sub)
    return parser


def _pretrain(args: argparse.Namespace) -> int:
    from cxr_curriculum.config import load_run

    run = load_run(args.config)
    if args.check:
        print(f"{args.config}: valid ({len(run.curriculum)} stages)")
        return 0
    run.run()
    if os.environ.get("RANK", "0") == "0":
        print(f"pretrained: checkpoints in {run.curriculum.checkpoint_dir}")
    return 0


def _launch(args: argparse.Namespace) -> int:
    from cxr_curriculum.config.launch import SlurmOptions, launch_study

    slurm = SlurmOptions(
        partition=args.partition, gpus_per_unit=args.gpus_per_unit,
        cpus_per_unit=args.cpus_per_unit, time=args.time, mem=args.mem, account=args.account,
        extra=dict(args.slurm_option), setup=tuple(args.slurm_setup),
    )  # fmt: skip
    launch = launch_study(
        args.config, args.launcher, max_parallel=args.max_parallel, slurm=slurm,
        claim_timeout=args.claim_timeout, folder=args.jobs_folder,
    )  # fmt: skip
    if args.launcher == "slurm":
        if not launch.units:
            print("nothing to submit: every unit is done or held by a live worker")
        else:
            print(f"submitted {len(launch.units)} units {launch.units} as Slurm jobs:")
            print(" ".join(launch.job_ids))
            print(f"logs in {launch.folder}; follow with: --list-units")
        return 0
    print(f"{len(launch.job_ids)} local workers done; study: {launch.output / 'report.md'}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from cxr_curriculum.config import ConfigError, load_study
    from cxr_curriculum.study.design import check_design
    from cxr_curriculum.study.units import format_units

    if args.max_cells is not None and (args.worker or args.launcher):
        mode = "--worker" if args.worker else f"--launcher {args.launcher}"
        text = (
            f"error: --max-cells cannot be combined with {mode}: workers compute until no "
            "unit is left; use --max-cells alone (or with --unit K)"
        )
        print(text, file=sys.stderr)
        return 2
    if args.launcher:
        return _launch(args)
    study = load_study(args.config)
    timeout = {} if args.claim_timeout is None else {"claim_timeout": args.claim_timeout}
    try:  # every task, file start and the pretraining images, before any training
        checked = study.check()
    except ValueError as err:
        raise ConfigError(f"{args.config}: {err}") from err
    if args.check:
        print(f"{args.config}: valid ({len(study.cells())} cells, {len(study.pending())} to do)")
        for line in checked:
            print(f"  {line}")
        return 0
    if args.list_units:
        check_design(study, record=False)
        print(format_units(study, study.unit_status(*timeout.values())))
        return 0
    if args.report_only:
        check_design(study, record=False)
        study.write_report()
    elif args.unit is not None:
        n = len(study.units())
        if not 0 <= args.unit < n:
            print(f"error: --unit must lie in 0..{n - 1} for {args.config}; got {args.unit}",
                  file=sys.stderr)  # fmt: skip
            return 2
        study.run(unit=args.unit, max_cells=args.max_cells, **timeout)
    elif args.worker:
        study.run_worker(**timeout)
    else:
        study.run(max_cells=args.max_cells, **timeout)
    if os.environ.get("RANK", "0") == "0":
        if study.reported:
            print(f"study: {study.output / 'report.md'}")
        else:
            print(
                f"study: this process's units are done; the worker that completes the study "
                f"writes {study.output / 'report.md'} (or run --report-only)"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for an error the library names)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cxr_curriculum._artefacts import ArtefactIntegrityError, ArtefactWriteError
    from cxr_curriculum.config import ConfigError
    from cxr_curriculum.config.launch import ClusterSupportError, LaunchError
    from cxr_curriculum.curriculum import CurriculumError, ResumeError
    from cxr_curriculum.data import DicomSupportError, ImageReadError
    from cxr_curriculum.study.folder import StudyFolderError

    expected = (
        ConfigError, FileNotFoundError, StudyFolderError, ArtefactIntegrityError,
        ArtefactWriteError, ImageReadError, DicomSupportError, ClusterSupportError,
        LaunchError, CurriculumError, ResumeError,
    )  # fmt: skip
    try:
        return _pretrain(args) if args.command == "pretrain" else _study(args)
    except expected as err:
        # an ArtefactWriteError's str() wraps its message in "[Errno N] ...: 'file'"
        text = err.strerror if isinstance(err, ArtefactWriteError) and err.strerror else err
        print(f"error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
