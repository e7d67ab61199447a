"""Hardware: GPU and cluster profiles (and, later, calibration of this machine)."""
