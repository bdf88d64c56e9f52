"""The build skeleton every builder shares: the build tail (curate -> split -> write), steps and their
executor, the shard writer, manifest, splits, input fingerprints, secret redaction, validation."""
