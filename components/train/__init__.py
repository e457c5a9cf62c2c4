"""`avs train` / `avs predict-masks`: Stepping Stones two-stage training of the AVS networks."""
