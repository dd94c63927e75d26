"""sm_train: the training-script side of Amazon SageMaker + Hugging Face."""

__version__ = "0.1.0"
