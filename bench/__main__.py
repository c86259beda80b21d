"""`python -m bench [signups|send|tick|all]`: the measurements behind docs/performance.md.

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
    # Also after "all", where a flag given before it must not be reset to its default.
    for flag in ("--postgres", "--redis"):
        every.add_argument(flag, default=argparse.SUPPRESS)
    for module in PARTS.values():
        module.add_arguments(every)
    return root


def with_part(argv: list[str]) -> list[str]:
    """No part named: every part, and any part's flag is taken
    (`python -m bench --subscribers 1000000 --single 2000`)."""
    if {"-h", "--help", *PARTS, "all"} & set(argv):
        return argv
    return ["all", *argv]


def main() -> None:
    args = parser().parse_args(with_part(sys.argv[1:]))
    chosen = [args.part] if args.part != "all" else list(PARTS)
    for name in chosen:
        print(f"## {name}\n\n{PARTS[name].main(args)}\n", flush=True)


if __name__ == "__main__":
    main()
