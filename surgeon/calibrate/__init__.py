"""Calibrate and score: run the model on calibration text (whole or layer by
layer, on any device map), collect statistics, and turn them into a score per
prunable unit with one of the registered criteria."""
