"""Shard and media I/O shared by every layer: tar shards (tar), mp4 files (mp4), safe weight files (weights)."""
