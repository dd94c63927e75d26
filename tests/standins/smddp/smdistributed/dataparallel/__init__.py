"""Stand-in for smdistributed.dataparallel."""

__version__ = "0.0.0+standin"
