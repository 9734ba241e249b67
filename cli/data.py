"""``connectofly data``: the connectome tables, their sources, and whether they are here.

Lists every table the loaders read: where it is read from (``$CONNECTOFLY_DATA_DIR``
when set, else the user cache, ``$CONNECTOFLY_CACHE_DIR`` to move it), whether it
is there and matches its pinned SHA-256, and the public files it is made
from. ``--fetch`` downloads every table that is missing or fails its hash (each
from its first reachable source, hash-checked, converted where the upstream
file is a pickle) and saves it there. Exit status 2 when a table cannot be
downloaded or fails its hash.

    connectofly data
    connectofly data --fetch
"""

from __future__ import annotations

import argparse
import logging
import os

from connectofly.circuits import data


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list the connectome tables, their sources and whether they are here; --fetch downloads them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fetch", action="store_true",
                        help="download every table that is missing or fails its hash")
    parser.set_defaults(handler=run)


def listing() -> str:
    """Where tables are read from, then each table's state and sources."""
    where = (f"${data.DATA_DIR_ENV}" if os.environ.get(data.DATA_DIR_ENV) else "the user cache")
    lines = [f"connectome tables in {data.tables_dir()} ({where})"]
    for name, entry in data.KNOWN_FILES.items():
        lines.append(f"{name}: {data.table_state(name)}")
        for i, source in enumerate(entry.sources):
            note = f"  ({source.note})" if source.note else ""
            lines.append(f"  {'from' if i == 0 else 'or  '} {data.resolve_url(source.url)}{note}")
    return "\n".join(lines)


def fetch_missing() -> None:
    """Fetch every table not verified in :func:`data.tables_dir`, with a progress bar.

    Raises :class:`data.DataUnavailable` (one line) after trying them all when
    some could not be downloaded.
    """
    import pooch
    from tqdm import tqdm

    pooch.get_logger().setLevel(logging.WARNING)  # the bar reports progress
    wanted = [name for name in data.KNOWN_FILES if data.table_state(name) != "verified"]
    failed = []
    bar = tqdm(wanted, desc="fetching", unit="table")
    for name in bar:
        bar.set_postfix_str(name)
        try:
            data.fetch_table(name, data.tables_dir())
        except data.DataUnavailable as error:
            failed.append(error)
    if failed:
        raise data.DataUnavailable(f"{len(failed)} of {len(wanted)} tables not fetched; first: {failed[0]}")


def run(args: argparse.Namespace) -> None:
    try:
        if args.fetch:
            fetch_missing()
    finally:
        print(listing())
