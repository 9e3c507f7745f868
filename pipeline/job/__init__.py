"""A job's life in its store, the same for every resumable command (video, zoom, images).

``store``: the work folder (a path or any fsspec URL), which names in it are dreamreel's, locks.
``record``: the one typed JobRecord (identity, token, numerics, plan, layouts), kept twice with
checksums. ``session``: a run of a job: claim the folder, open or begin the record, undo a failed
start, repeat until nothing is damaged, remove the folder after success. ``framestore``: the one
layout and codec of stored frames and chunks. ``integrity``: the checksum every stored file carries.
``locations``: a path or URL made local, an output uploaded. ``assemble``: chunks and audio joined
into the output, checked against the plan, put in place."""
