"""Training: state, optimizer, jitted steps, loop, checkpoints, sharding, metrics."""
