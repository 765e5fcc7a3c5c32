"""The correctness of l3tol1: pure, synchronous, no I/O, no third-party imports.

records      Event, Reject, Quote and the closed sets of names (actions, reasons, anomalies)
numbers      every numeric field's bounds, parsing and formatting
csv_parser   L3 CSV rows to events and rejects (SPEC §1, §4, §9)
feed         one input's events back in seq order (SPEC §5)
book         one instrument's orders and price levels
instruments  events applied to the books, and the write rule (SPEC §2, §3, §9)
l1           quotes as L1 CSV text (SPEC §2)
"""
