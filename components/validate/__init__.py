"""Validation of an AVSBench copy: a manifest of every clip, a great-expectations suite, data docs."""

# The suite's checks, by name (components/validate/suite.py defines them). Each has a level in params.yaml
# (validate.warnings lists the warnings; every other check is an error).
CHECKS: tuple[str, ...] = (
    "unique_ids", "known_split", "known_s4_category", "known_avss_label", "no_missing_files",
    "all_files_readable", "frame_count", "frame_sizes_consistent", "mask_count", "mask_size", "mask_values",
    "sample_rate", "audio_channels", "audio_not_silent", "audio_long_enough",
)
