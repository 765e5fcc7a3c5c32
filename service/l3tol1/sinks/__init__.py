"""Outputs: L1 quotes as CSV (csv.py), rejected rows as JSON lines (rejects.py), both on locked
output files (files.py) and flushed by the policy of writer.py, behind the interface of base.py."""
