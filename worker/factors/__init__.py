"""Factor betas: the math, the store, the service the jobs call, the switch and the factors command."""
