"""Routes 2 and 3: prepared data starts the training pipeline; a finished pipeline meets the approval gate."""
