"""Databento DBN input (SPEC §12): its metadata, and its bytes cut into whole records.

The metadata is decoded with Databento's own ``databento-dbn`` package (any DBN version), and
turned into plain data for the core (`MboMetadata`). The records are cut by their own length
(the first byte of each, in 4-byte words): a file holds MBO records (56 bytes, 64 with ``ts_out``)
and, when recorded from the live API, symbol-mapping, system and error records of other sizes.
They are handed to the core whole, as bytes: converting them is the parser's job (core/mbo.py),
as CSV lines are.
"""

from __future__ import annotations

import struct
from datetime import date

from l3tol1.core.mbo import HEADER_SIZE, MboMetadata
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
    """Cuts a DBN stream's record bytes into whole records by their length, counting them
    (``line`` is the number of records handed out, of every type) and the bytes consumed
    (``offset``, metadata included).

    A record whose length is below the 16-byte record header is damage: the records before it
    are handed out, and the next call raises.
    """

    __slots__ = ("_damage", "_partial", "line", "name", "offset", "record_size")

    def __init__(self, record_size: int, offset: int, name: str) -> None:
        self.record_size = record_size  # of an MBO record: the usual length, walked fast
        self.name = name
        self.offset = offset
        self.line = 0
        self._partial = b""
        self._damage: InputError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a record not whole yet."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> Lines:
        """The whole records ``chunk`` completes, numbered from the next record.

        :raises InputError: an earlier chunk held a damaged record (naming it).
        """
        if self._damage is not None:
            raise self._damage
        partial = self._partial
        # The record begun in the last chunk is finished from this one, and the records after
        # it walked in place: the whole records are copied once, not joined then cut.
        start = partial[0] * 4 - len(partial) if partial else 0
        if start > len(chunk):
            self._partial = partial + chunk
            return Lines(b"", self.line + 1)
        whole, count = self._walk(chunk, start, -1)
        count += 1 if partial else 0
        if whole < len(chunk) and chunk[whole] * 4 < HEADER_SIZE:
            index = self.line + count + 1
            self._damage = InputError(
                f"input {self.name} is damaged at record {index} (byte"
                f" {self.offset + len(partial) + whole}): its length, {chunk[whole] * 4} bytes,"
                " is shorter than a record header"
            )
            self._partial = b""
        else:
            self._partial = chunk[whole:]
        # (without a record begun before, the chunk itself when it ends with a record)
        data = b"".join((partial, memoryview(chunk)[:whole])) if partial else chunk[:whole]
        out = Lines(data, self.line + 1)
        self.line += count
        self.offset += len(data)
        return out

    def finish(self) -> Lines:
        """The end of the stream.

        :raises InputError: it ends inside a record (cut short or damaged), or a record was
            damaged.
        """
        if self._damage is not None:
            raise self._damage
        if self._partial:
            raise InputError(
                f"input {self.name} ends inside record {self.line + 1}: the file is cut short or"
                " damaged"
            )
        return Lines(b"", self.line + 1)

    def skip_through(self, lines: Lines, record: int) -> Lines:
        """``lines`` without the records numbered up to ``record`` (read before a restart)."""
        drop = record - lines.first_line + 1
        if drop <= 0:
            return lines
        cut, count = self._walk(lines.data, 0, drop)
        return Lines(lines.data[cut:], lines.first_line + count)

    def _walk(self, data: bytes, at: int, most: int) -> tuple[int, int]:
        """Where the whole records from ``at`` end, and how many there are (at most ``most``,
        unless it is negative); stops before a record shorter than a header. Runs of records of
        the usual size are stepped over at C speed (their length bytes compared at once)."""
        size, end, count = self.record_size, len(data), 0
        usual = bytes((size // 4,))
        while at < end and count != most:
            run = (end - at) // size
            if most >= 0:
                run = min(run, most - count)
            if run:
                lengths = data[at : at + run * size : size]
                same = run - len(lengths.lstrip(usual))
                at += same * size
                count += same
                if same == run:
                    continue
            length = data[at] * 4
            if length < HEADER_SIZE or length > end - at:
                break
            at += length
            count += 1
        return at, count
