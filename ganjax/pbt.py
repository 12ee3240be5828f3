"""Population-based training: the worst members continue from copies of the best.

Every so often the runner scores the members (FID, say) and calls
``exploit_explore``: the bottom ``fraction`` of the population copies the
whole training state of members drawn from the top ``fraction`` (exploit)
and perturbs the copied hyper-parameters (explore), in one jittable gather
along the member axis.

References:
  Jaderberg et al., 2017, Population Based Training of Neural Networks
  (https://arxiv.org/abs/1711.09846), Section 3 (truncation selection, the
  bottom 20-25% copy the top; hyper-parameters perturbed by x0.8 or x1.2)
  and Section 4.3 (GANs).
"""

from typing import Mapping

import jax
import jax.numpy as jnp

from ganjax import population as population_lib


def exploit_explore(key: jax.Array,
                    pstate: population_lib.PopulationState,
                    scores: jax.Array,
                    fraction: float = 0.25,
                    perturb: tuple[float, ...] = (0.8, 1.2),
                    bounds: Mapping[str, tuple[float, float]] | None = None,
                    higher_is_better: bool = False):
  """Truncation selection: the bottom members copy top members, then explore.

  The ``n = floor(fraction * N)`` members with the worst scores (frozen
  members and NaN scores count as the worst) each copy a member drawn
  uniformly from the ``n`` best: its parameters, optimizer states, batch
  statistics, EMA, ADA probability, ``alive`` flag and hyper-parameters,
  and keep their own ``rng`` stream and ``step``. Each copied
  hyper-parameter is then multiplied by a factor drawn uniformly from
  ``perturb`` and clipped to ``bounds[name]`` (by default
  ``ganjax.population.value_range(name)``). The other members are unchanged.

  Jittable with the options closed over:
  ``jax.jit(lambda k, p, s: exploit_explore(k, p, s, fraction=0.25))``.

  Args:
    key: a key; the same key, state and scores give the same result.
    pstate: a ``ganjax.population.PopulationState`` of N members.
    scores: float ``[N]``, one score per member; lower is better (FID)
      unless ``higher_is_better``.
    fraction: in (0, 0.5], the share of members replaced, and the share
      they copy from.
    perturb: the factors a copied hyper-parameter is multiplied by.
    bounds: optional ``{name: (low, high)}`` per hyper-parameter.
    higher_is_better: True when a larger score is better (accuracy, IS).

  Returns:
    ``(new_pstate, parents)``: ``parents`` int32 ``[N]``, the member whose
    state each member now continues (itself for a member not replaced).
  """
  alive = pstate.alive
  num = alive.shape[0]
  if not 0.0 < fraction <= 0.5:
    raise ValueError(f"exploit_explore: fraction must be in (0, 0.5], got "
                     f"{fraction}.")
  if jnp.shape(scores) != (num,):
    raise ValueError(f"exploit_explore: scores must be [N={num}], one per "
                     f"member, got shape {jnp.shape(scores)}.")
  replaced = int(fraction * num)
  if replaced == 0:
    return pstate, jnp.arange(num, dtype=jnp.int32)
  select_key, perturb_key = jax.random.split(key)
  badness = -scores if higher_is_better else scores
  badness = jnp.where(alive & ~jnp.isnan(badness), badness, jnp.inf)
  order = jnp.argsort(badness, stable=True)  # best first
  top, bottom = order[:replaced], order[num - replaced:]
  parents = jnp.arange(num, dtype=jnp.int32).at[bottom].set(
      top[jax.random.randint(select_key, (replaced,), 0, replaced)]
      .astype(jnp.int32))
  copied = parents != jnp.arange(num)

  gather = lambda tree: jax.tree.map(lambda x: x[parents], tree)
  members = gather(pstate.members).replace(rng=pstate.members.rng,
                                           step=pstate.members.step)
  factors = jnp.asarray(perturb, jnp.float32)
  hparams = {}
  for i, (name, values) in enumerate(sorted(pstate.hparams.items())):
    low, high = (bounds or {}).get(name, population_lib.value_range(name))
    choice = jax.random.randint(jax.random.fold_in(perturb_key, i), (num,), 0,
                                factors.shape[0])
    explored = jnp.clip(values[parents] * factors[choice], low, high)
    hparams[name] = jnp.where(copied, explored, values).astype(values.dtype)
  members = population_lib.set_optimizer_hparams(members, hparams)
  return pstate.replace(members=members, hparams=hparams,
                        alive=alive[parents]), parents
