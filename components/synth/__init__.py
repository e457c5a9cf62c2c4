"""Built-in synthetic AVSBench: a real audio-visual task written in the benchmark's exact layout."""
