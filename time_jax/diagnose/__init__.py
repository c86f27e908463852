"""Diagnostics: weight similarity, attention and feature maps, reconstructions."""
