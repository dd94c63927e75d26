"""Test stand-in for SageMaker's smdistributed package (only dataparallel's torch backend). Never shipped."""
