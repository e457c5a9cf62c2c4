"""`avs features`: hierarchical log-mel spectrograms and maskiges for every clip.

`from components.features import log_mel` is the public entry point for audio features.
"""

from components.features.logmel import log_mel

__all__ = ["log_mel"]
