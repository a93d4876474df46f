"""``qsmbids atlas fetch|check``: install the default atlas, or validate an atlas folder."""

from __future__ import annotations

import argparse
import sys

from qsmbids.cli.exit_codes import ExitCode


def run_atlas(args: argparse.Namespace) -> int:
    """Run an ``atlas`` subcommand; return the exit code."""
    from qsmbids.atlas.model import AtlasError, load_atlas

    if args.atlas_command == "check":
        try:
            atlas = load_atlas(args.atlas_dir)
        except AtlasError as exc:
            sys.stderr.write(f"qsmbids: error: {exc}\n")
            return int(ExitCode.NO_INPUT)
        print(f"atlas {atlas.name} ({atlas.space}) in {atlas.root}: "
              f"{len(atlas.regions)} regions, {len(atlas.references)} references: OK")
        return 0

    from qsmbids.atlas.build_default import check_sources
    from qsmbids.atlas.fetch import FetchError, fetch_default_atlas

    try:
        atlas, sources = fetch_default_atlas(args.cache_dir, atlas_dir=args.atlas_dir,
                                             mirror=args.mirror, n_threads=args.omp_nthreads)
    except FetchError as exc:
        sys.stderr.write(f"qsmbids: error: {exc}\n")
        return int(ExitCode.UNAVAILABLE)
    except FileNotFoundError as exc:  # sources incomplete (should not happen after fetch)
        sys.stderr.write(f"qsmbids: error: {exc}\n")
        return int(ExitCode.NO_INPUT)
    check_sources(sources)
    print(f"default atlas built in {atlas.root} (originals verified in {sources})")
    print(f"licence: {atlas.license}")
    return 0
