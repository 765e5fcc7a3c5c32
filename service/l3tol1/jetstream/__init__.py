"""Scale-out on NATS JetStream (SPEC §13): the roles `publish`, `work` and `collect`.

wire       names, headers and message bodies (pure)
client     the JetStream primitives: streams, fenced and atomic publishes, pinned pulls
publish    the file job's front half, publishing ordered events per partition
work       the books of the partitions a worker owns; state and rows in one atomic batch
collect    the L1 rows into the file job's CSV or Parquet output
"""
