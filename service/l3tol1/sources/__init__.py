"""Inputs: a file followed like ``tail -F`` (file.py), or a stream read once to its end
(stream.py: standard input, a pipe, a compressed file), behind the interface of base.py."""
