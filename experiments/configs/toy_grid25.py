"""The 5x5 grid of 25 Gaussians (centres -4..4, std 0.05), the VEEGAN /
PacGAN mode-coverage benchmark; same networks and training as ``toy_ring8``.
"""

from experiments.configs import toy_ring8


def get_config():
  c = toy_ring8.get_config()
  c.dataset = "toy_grid25"
  c.num_steps = 20_000
  return c
