"""Approved-task dispatch: the database side of the kernel scheduler (store, outbox relay,
queue adapters, runtimes, admission re-check) and its composition for server and worker."""
