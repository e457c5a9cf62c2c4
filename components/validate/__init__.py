"""`avs validate`: a manifest of every clip, checked by a great-expectations suite."""
