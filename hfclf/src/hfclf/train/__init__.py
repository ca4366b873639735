"""train: the training loop, model loading/saving, batching, augmentation, calibration, sweeps, distributed runs."""
