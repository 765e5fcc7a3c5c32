"""Databento's own decoder alone: a DBN file (plain or zstd) decoded into Python records by
``databento_dbn``, nothing else done with them (the bar the service's whole process is measured
against, bench/run.py's ``mbo`` case).

Usage: ``python bench/decode_dbn.py IN.dbn[.zst]`` (prints the records decoded, metadata first)
"""

from __future__ import annotations

import sys

import databento_dbn as dbn

READ = 1 << 20  # bytes of the file read at once


def decode(path: str) -> int:
    """The records of the file at ``path``, the metadata counted as one, once decoded."""
    count = 0
    with open(path, "rb") as raw:
        zstd = raw.read(4) == b"\x28\xb5\x2f\xfd"
        raw.seek(0)
        compression = dbn.Compression.ZSTD if zstd else dbn.Compression.NONE
        decoder = dbn.DBNDecoder(compression=compression)
        while data := raw.read(READ):
            count += len(decoder.write_and_decode(data))
    return count


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    print(decode(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
