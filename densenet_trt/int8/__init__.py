"""INT8: calibration, sensitivity, part-by-part comparison, the int8 coverage and speed checks."""
