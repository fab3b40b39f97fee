"""Worker pools: batching, runtimes, the serving loop and the training worker."""
