"""Databento DBN input (SPEC §12): its metadata, and its bytes cut into whole records.

The metadata is decoded with Databento's own ``databento-dbn`` package (any DBN version), and
turned into plain data for the core (`MboMetadata`). The records themselves are fixed-size
(56 bytes for MBO, 64 with ``ts_out``) and are handed to the core whole, as bytes: converting
them is the parser's job (core/mbo.py), as CSV lines are.
"""

from __future__ import annotations

import struct
from datetime import date

from l3tol1.core.mbo import MboMetadata
from l3tol1.errors import InputError
from l3tol1.sources.lines import Lines

__all__ = ["DBN_MAGIC", "RecordSplitter", "read_metadata"]

DBN_MAGIC = b"DBN"
_EPOCH = date(1970, 1, 1).toordinal()


def read_metadata(head: bytes, name: str) -> tuple[MboMetadata, int] | None:
    """The metadata at the start of a DBN stream and its length in bytes; None when ``head``
    does not hold all of it yet.

    :raises InputError: the data is not DBN, its metadata is damaged, or its schema is not MBO.
    """
    if len(head) < 8:
        return None
    if not head.startswith(DBN_MAGIC):
        raise InputError(f"input {name} is not Databento DBN data")
    length = 8 + struct.unpack_from("<I", head, 4)[0]
    if len(head) < length:
        return None
    import databento_dbn  # only runs that read DBN pay for the import

    try:
        metadata = databento_dbn.Metadata.decode(head[:length])
    except Exception as exc:  # the package raises its own DBNError
        raise InputError(f"input {name}: damaged DBN metadata ({exc})") from exc
    schema = "mixed" if metadata.schema is None else str(metadata.schema)
    if schema != "mbo":
        raise InputError(
            f"input {name} holds Databento {schema} records, not MBO: only MBO (market by"
            " order) is a Level 3 feed"
        )
    symbols: dict[int, list[tuple[int, int, str]]] = {}
    for raw_symbol, intervals in (metadata.mappings or {}).items():
        for interval in intervals:
            instrument_id = str(interval["symbol"])
            if not instrument_id.isdigit():
                continue  # not mapped to an instrument_id: nothing to name by it
            symbols.setdefault(int(instrument_id), []).append(
                (
                    interval["start_date"].toordinal() - _EPOCH,
                    interval["end_date"].toordinal() - _EPOCH,
                    raw_symbol,
                )
            )
    record_size = 64 if metadata.ts_out else 56
    plain = {key: tuple(sorted(value)) for key, value in symbols.items()}
    return MboMetadata(str(metadata.dataset), record_size, plain), length


class RecordSplitter:
    """Cuts a DBN stream's record bytes into whole records, counting them (``line`` is the
    number of records handed out) and the bytes consumed (``offset``, metadata included)."""

    __slots__ = ("_partial", "line", "name", "offset", "record_size")

    def __init__(self, record_size: int, offset: int, name: str) -> None:
        self.record_size = record_size
        self.name = name
        self.offset = offset
        self.line = 0
        self._partial = b""

    @property
    def buffered(self) -> int:
        """Bytes held of a record not whole yet."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> Lines:
        """The whole records ``chunk`` completes, numbered from the next record."""
        data = self._partial + chunk if self._partial else chunk
        whole = len(data) - len(data) % self.record_size
        self._partial = data[whole:]
        out = Lines(data[:whole], self.line + 1)
        self.line += whole // self.record_size
        self.offset += whole
        return out

    def finish(self) -> Lines:
        """The end of the stream.

        :raises InputError: it ends inside a record (cut short or damaged).
        """
        if self._partial:
            raise InputError(
                f"input {self.name} ends inside record {self.line + 1}: the file is cut short or"
                " damaged"
            )
        return Lines(b"", self.line + 1)

    def skip_through(self, lines: Lines, record: int) -> Lines:
        """``lines`` without the records numbered up to ``record`` (read before a restart)."""
        drop = max(0, min(record - lines.first_line + 1, len(lines.data) // self.record_size))
        if not drop:
            return lines
        return Lines(lines.data[drop * self.record_size :], lines.first_line + drop)
