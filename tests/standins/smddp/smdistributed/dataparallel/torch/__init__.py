"""Stand-in for smdistributed.dataparallel.torch."""
