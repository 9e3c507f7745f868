"""Tasks on Dask, for any command: ``schedule`` (a graph of tasks submitted in order, results as they
come, a task that kills workers stopped, Ctrl-C), ``client`` (a local cluster started and stopped
with the command, or an existing one reached with a bounded wait), ``workers`` (what every task needs
on a worker: the job's store seen, its files made visible, one network per process, a job's state
released)."""
