"""Plain PyTorch versions of ganjax's models and k:1 step, for throughput comparisons.

The same architectures, batch, loss (non-saturating, from logits) and optimizer
(Adam) as the ganjax benchmark, written the way a PyTorch user would: eager
mode, ``nn.Module``s, ``torch.optim.Adam``. Each step does Algorithm 1: k
discriminator updates on fresh noise (the fakes drawn without a graph), then
one generator update through the updated discriminator (whose parameters are
frozen for that backward pass, so no D gradients are computed there).

Models (``build(name)``):
  * ``small_mlp``: G 100-128-784 (ReLU, sigmoid), D 784-128-1 (ReLU).
  * ``goodfellow_mlp``: the GAN paper's MNIST nets, G 100-1200-1200-784 (ReLU,
    sigmoid), D maxout 240x5 twice with dropout 0.2 (input) / 0.5 -> 1.
  * ``dcgan``: DCGAN 28x28x1 as ``ganjax.models.dcgan((28, 28, 1), 100)``:
    G dense 7x7x128 (no bias), BN, ReLU, ConvTranspose 4x4 s2 128->64 (no
    bias), BN, ReLU, ConvTranspose 4x4 s2 64->1, tanh; D conv 4x4 s2 64,
    lrelu 0.2, conv 4x4 s2 128, lrelu 0.2, dense 1. N(0, 0.02) weights.

Usage::

    python -m benchmarks.torch_reference --model dcgan --k 1 --batch 64
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
import torch.nn.functional as F


class Maxout(nn.Module):
  """max over ``pieces`` affine maps, as ``ganjax.models.Maxout``."""

  def __init__(self, in_features: int, units: int, pieces: int):
    super().__init__()
    self.units, self.pieces = units, pieces
    self.linear = nn.Linear(in_features, units * pieces)

  def forward(self, x):
    y = self.linear(x)
    return y.view(x.shape[0], self.units, self.pieces).amax(-1)


class MLPGenerator(nn.Module):

  def __init__(self, latent_dim: int, hidden, out_features: int):
    super().__init__()
    layers, width = [], latent_dim
    for h in hidden:
      layers += [nn.Linear(width, h), nn.ReLU()]
      width = h
    layers += [nn.Linear(width, out_features), nn.Sigmoid()]
    self.net = nn.Sequential(*layers)

  def forward(self, z):
    return self.net(z)


def small_mlp(latent_dim: int = 100, image_size: int = 784):
  G = MLPGenerator(latent_dim, (128,), image_size)
  D = nn.Sequential(nn.Flatten(), nn.Linear(image_size, 128), nn.ReLU(),
                    nn.Linear(128, 1))
  return G, D


def goodfellow_mlp(latent_dim: int = 100, image_size: int = 784):
  G = MLPGenerator(latent_dim, (1200, 1200), image_size)
  D = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), Maxout(image_size, 240, 5),
                    nn.Dropout(0.5), Maxout(240, 240, 5), nn.Dropout(0.5),
                    nn.Linear(240, 1))
  return G, D


class DCGANGenerator(nn.Module):

  def __init__(self, latent_dim: int = 100, channels: int = 1):
    super().__init__()
    self.fc = nn.Linear(latent_dim, 7 * 7 * 128, bias=False)
    # torch momentum 0.1 = flax momentum 0.9 (weight of the new statistics).
    self.bn0 = nn.BatchNorm2d(128, eps=1e-5, momentum=0.1)
    self.up1 = nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(64, eps=1e-5, momentum=0.1)
    self.up2 = nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1)

  def forward(self, z):
    x = self.fc(z).view(z.shape[0], 128, 7, 7)
    x = F.relu(self.bn0(x))
    x = F.relu(self.bn1(self.up1(x)))
    return torch.tanh(self.up2(x))


def dcgan(latent_dim: int = 100, channels: int = 1):
  G = DCGANGenerator(latent_dim, channels)
  D = nn.Sequential(
      nn.Conv2d(channels, 64, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
      nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
      nn.Flatten(), nn.Linear(7 * 7 * 128, 1))
  for m in list(G.modules()) + list(D.modules()):
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(m.weight, 0.0, 0.02)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
  return G, D


MODELS = {"small_mlp": small_mlp, "goodfellow_mlp": goodfellow_mlp,
          "dcgan": dcgan}
# Shape of one real example as the torch models take it.
EXAMPLE_SHAPES = {"small_mlp": (784,), "goodfellow_mlp": (784,),
                  "dcgan": (1, 28, 28)}


def build(name: str):
  """``(G, D)`` torch modules for a model name of the benchmark."""
  return MODELS[name]()


class TorchGAN:
  """Algorithm 1 with Adam, non-saturating loss from logits, in eager PyTorch."""

  def __init__(self, name: str, k: int = 1, latent_dim: int = 100,
               lr: float = 2e-4, b1: float = 0.5, device: str = "cpu",
               seed: int = 0):
    torch.manual_seed(seed)
    self.k, self.latent_dim, self.device = k, latent_dim, device
    self.G, self.D = (m.to(device).train() for m in build(name))
    self.g_opt = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(b1, 0.999))
    self.d_opt = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(b1, 0.999))

  def step(self, batch: torch.Tensor):
    """``batch``: ``[k, B, *example_shape]`` real data; returns the two losses."""
    n = batch.shape[1]
    ones = torch.ones(n, 1, device=self.device)
    zeros = torch.zeros(n, 1, device=self.device)
    for real in batch:
      with torch.no_grad():
        fake = self.G(torch.randn(n, self.latent_dim, device=self.device))
      logits = self.D(torch.cat([real, fake.view_as(real)]))
      d_loss = (F.binary_cross_entropy_with_logits(logits[:n], ones)
                + F.binary_cross_entropy_with_logits(logits[n:], zeros))
      self.d_opt.zero_grad(set_to_none=True)
      d_loss.backward()
      self.d_opt.step()
    self.D.requires_grad_(False)
    fake = self.G(torch.randn(n, self.latent_dim, device=self.device))
    g_loss = F.binary_cross_entropy_with_logits(
        self.D(fake.view((n,) + batch.shape[2:])), ones)
    self.g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    self.g_opt.step()
    self.D.requires_grad_(True)
    return d_loss.detach(), g_loss.detach()


def synthetic_batch(name: str, k: int, batch_size: int, device: str = "cpu"):
  """Uniform fake "real" data ``[k, B, *example_shape]`` in the model's range."""
  x = torch.rand((k, batch_size) + EXAMPLE_SHAPES[name], device=device)
  return x * 2 - 1 if name == "dcgan" else x


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="dcgan", choices=sorted(MODELS))
  parser.add_argument("--k", type=int, default=1)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  gan = TorchGAN(args.model, k=args.k)
  batch = synthetic_batch(args.model, args.k, args.batch)
  gan.step(batch)
  start = time.perf_counter()
  for _ in range(args.steps):
    gan.step(batch)
  dt = (time.perf_counter() - start) / args.steps
  print(f"{args.model} k={args.k} B={args.batch}: {1e3 * dt:.1f} ms/step, "
        f"{args.k * args.batch / dt:.0f} real images/s "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
  main()
