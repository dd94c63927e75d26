"""Tests that need a CUDA GPU (marked gpu; `make test-gpu` runs exactly these, skipped with the reason without one)."""
