"""Command line: ``python -m cxr_curriculum pretrain RUN.toml`` / ``study STUDY.toml``.

Both commands run unchanged under ``torchrun --nproc_per_node N -m cxr_curriculum ...``:
the :class:`~cxr_curriculum.Curriculum` joins the process group torchrun describes, and
only rank 0 writes checkpoints, cells and reports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxr_curriculum",
        description="Curricular SSL pretraining and multi-seed studies from TOML config files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("pretrain", help="run a pretraining config (stages, data, budget, seed)")
    pre.add_argument("config", help="the run's TOML file")
    pre.add_argument("--check", action="store_true", help="validate the file and exit")
    st = sub.add_parser("study", help="run (or resume) a study config")
    st.add_argument("config", help="the study's TOML file")
    st.add_argument("--check", action="store_true", help="validate the file and exit")
    st.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    st.add_argument(
        "--report-only",
        action="store_true",
        help="write results.json/report.md from finished cells",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for an invalid config)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cxr_curriculum.config import ConfigError, load_run, load_study

    try:
        if args.command == "pretrain":
            run = load_run(args.config)
            if args.check:
                print(f"{args.config}: valid ({len(run.curriculum)} stages)")
                return 0
            run.run()
            if os.environ.get("RANK", "0") == "0":
                print(f"pretrained: checkpoints in {run.curriculum.checkpoint_dir}")
            return 0
        study = load_study(args.config)
        try:  # every task, file start and the pretraining images, before any training
            checked = study.check()
        except ValueError as err:
            raise ConfigError(f"{args.config}: {err}") from err
        if args.check:
            print(
                f"{args.config}: valid ({len(study.cells())} cells, {len(study.pending())} to do)"
            )
            for line in checked:
                print(f"  {line}")
            return 0
        if args.report_only:
            study.results().write(study.output)
        else:
            study.run(max_cells=args.max_cells)
        if os.environ.get("RANK", "0") == "0":
            print(f"study: {study.output / 'report.md'}")
        return 0
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
