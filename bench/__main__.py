"""`python -m bench [signups|send|all]`: the measurements behind docs/performance.md.

Each part prints a table; compare figures from one run only (the machine is
shared and noisy), and see each module for what it measures.
"""

from __future__ import annotations

import argparse
import sys

from bench import add_store_arguments, send, signups, tick

PARTS = {"signups": signups, "send": send, "tick": tick}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    add_store_arguments(root)
    sub = root.add_subparsers(dest="part")
    for name, module in PARTS.items():
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").split("\n")[0]))
    every = sub.add_parser("all", help="every part with its defaults")
    for module in PARTS.values():
        module.add_arguments(every)
    return root


def main() -> None:
    args = parser().parse_args()
    chosen = [args.part] if args.part not in (None, "all") else list(PARTS)
    if args.part is None:
        args = parser().parse_args([*sys.argv[1:], "all"])
    for name in chosen:
        print(f"## {name}\n\n{PARTS[name].main(args)}\n", flush=True)


if __name__ == "__main__":
    main()
