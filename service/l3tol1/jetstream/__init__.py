"""Scale-out on NATS JetStream (SPEC §13): the roles `publish`, `work` and `collect`.

wire       names, and what an l3tol1 message is: its headers, checked whole (pure)
client     the JetStream primitives: connecting, streams, fenced and atomic publishes, pinned
           pulls, a subject's previous message
stop       the stop signals of work and collect, heeded from the first instant
publish    the file job's front half, publishing ordered events per partition
work       the books of the partitions a worker owns; state and rows in one atomic batch
collect    the L1 rows into the file job's CSV or Parquet output
"""
