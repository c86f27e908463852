"""Input pipeline: sources, decoding, protocols, transforms and the Grain pipeline."""
