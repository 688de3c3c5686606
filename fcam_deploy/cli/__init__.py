"""The ``fcam`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers) -> None``, which
adds its parser and sets ``func=handler`` where ``handler(args: argparse.Namespace) -> int``. Modules are
imported only when :func:`main` runs, never at package import.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from fcam_deploy.errors import FcamError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Sub-command modules, in the order their commands appear in ``fcam --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "data",  # fcam data synth
    "train",  # fcam train classifier|fcam
    "eval",  # fcam eval
    "score",  # fcam score
    "demo",  # fcam demo
    "export",  # fcam export
    "quantize",  # fcam quantize
    "parity",  # fcam parity
    "engine",  # fcam build-engine
    "doctor",  # fcam doctor
    "predict",  # fcam predict
    "bench",  # fcam bench
    "localize",  # fcam localize (scale extra for --engine ray)
    "serve",  # fcam serve (scale extra)
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full ``fcam`` argument parser (imports every command module)."""
    from fcam_deploy import __version__

    parser = argparse.ArgumentParser(
        prog="fcam",
        description="fcam-deploy: weakly-supervised object localization, from training to deployment.",
    )
    parser.add_argument("--version", action="version", version=f"fcam-deploy {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fcam``; returns the process exit code (0 ok, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        extra = getattr(args, "needs_extra", None)
        if extra:  # commands of an optional extra say so before any work (exit 2, no traceback)
            from fcam_deploy._extras import require_extra

            require_extra(extra, f"fcam {args.command}")
        return int(args.func(args))
    except FcamError as exc:
        print(f"fcam {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
