"""Study E (protocol.md): a learnable world, a zoo of teachers, and the paper's study in miniature.

python -m studies.E build [--jobs 2]           the world, the zoo and the students (cached)
python -m studies.E run [--jobs 2] [--stage S]  generation, distillations, scores (cached)
python -m studies.E report                      results.json and report.txt from the runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from studies.E.world import ROOT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m studies.E", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["build", "pilot", "run", "report"])
    parser.add_argument("--root", type=Path, default=ROOT, help="where the world is built and cached")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time, one CPU thread each")
    parser.add_argument("--stage", choices=["generate", "distil", "score", "all"], default="all")
    args = parser.parse_args(argv)
    if args.command == "build":
        from studies.E.world import build

        build(args.root, jobs=args.jobs)
    elif args.command == "pilot":
        from studies.E.study import pilot

        pilot(args.root, jobs=args.jobs)
    elif args.command == "run":
        from studies.E.study import run

        run(args.root, stage=args.stage, jobs=args.jobs)
    else:
        from studies.E.analysis import report

        report(args.root)


if __name__ == "__main__":
    main()
