"""AVSBench on disk: class vocabularies, the file layout of S4/MS3/AVSS, and the dataset reader."""
