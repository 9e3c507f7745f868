"""`dreamreel video`, in the order a frame meets it: ``plan`` (one light pass over the clip: frame
times, shots, segments, chunks; a typed Plan kept in the job record), ``graph`` (the Plan and what the
store holds -> the tasks still to run, a pure function), ``tasks`` (on a worker: decode, dream with
dreamcore.sequence's policy, store, stream to the chunk's encoder), ``job`` (the command: the job's
session, the cluster, the run, the assembly)."""
