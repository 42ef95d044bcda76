"""Head training: arguments, the trainer, its checkpoints, calibration and curves."""
