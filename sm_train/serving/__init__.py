"""What a model dir serves with: `inference.py`, copied as it is into every model dir as `code/inference.py`
(deployable.make_deployable), where the SageMaker Hugging Face inference toolkit loads it. It stands alone: the
endpoint has no sm_train."""
