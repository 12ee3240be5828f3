"""How the step is compiled on this backend: choices made once, outside the game.

* The loop of the k discriminator updates. XLA:CPU runs the gradients of
  plain convolutions much slower inside a loop body (``lax.scan``) than
  outside: they are not rewritten into its fast canonical form.
  ``ganjax.models.layers.conv_general_dilated`` has canonical gradients, so
  the models' convs run as fast in the scan as unrolled
  (``benchmarks/results/benchmark.md``). For a discriminator with plain convs
  on CPU, ``d_loop='auto'`` therefore unrolls the k updates; everywhere else
  they run in one ``jax.lax.scan`` (compile time independent of k).
  ``choose_d_loop`` decides once per discriminator and input shape (``GAN.init``
  asks first; the step finds the answer in the cache).
* The map over the members of a population (``ganjax.population``). Under
  ``jax.vmap`` each member's convolution weights turn the convolutions into
  grouped ones, which XLA:CPU runs about half as fast as the members one
  after another (``benchmarks/results/population_speed.md``); MLPs run faster
  vmapped. ``choose_member_map`` picks ``jax.lax.map`` over the members for
  models with convolutions on CPU and for a population of one (its single
  run's program), ``jax.vmap`` everywhere else.
* Initialisation: ``init_variables`` jits ``module.init``, compiled once per
  (equal) module and input shape, from an ``rbg`` key (fast to compile on
  CPU), the same per key under ``jax.vmap``.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

D_LOOPS = ("auto", "scan", "unroll")


def _hashable(value) -> bool:
  """Whether ``value`` can key a cache (a module with an array field cannot)."""
  try:
    hash(value)
  except TypeError:
    return False
  return True


def _aval(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def _signature(tree) -> tuple:
  """A hashable description of ``tree``'s structure, shapes and dtypes."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _from_signature(signature: tuple):
  treedef, avals = signature
  return jax.tree.unflatten(
      treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals])


def _memoised(fn):
  """``fn(module, *trees)`` cached on the module and the trees' shapes
  (computed each time for an unhashable module)."""
  @functools.lru_cache(maxsize=256)
  def cached(module, *signatures):
    return fn(module, *map(_from_signature, signatures))

  @functools.wraps(fn)
  def call(module, *trees):
    if not _hashable(module):
      return fn(module, *trees)
    return cached(module, *map(_signature, trees))

  return call


# ------------------------------------------------------------------ loops


def _convs_in(jaxpr, inside_custom_vjp: bool) -> bool:
  """Whether ``jaxpr`` has a ``conv_general_dilated`` (also inside a
  ``custom_vjp``, when ``inside_custom_vjp``)."""
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      return True
    if name.startswith("custom_vjp") and not inside_custom_vjp:
      continue  # a custom backward pass, e.g. ganjax.models.layers'
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if hasattr(sub, "eqns") and _convs_in(sub, inside_custom_vjp):
          return True
  return False


def _one_example(inputs: tuple) -> tuple:
  return tuple(jax.ShapeDtypeStruct((1,) + jnp.shape(x)[1:], jnp.result_type(x))
               for x in inputs)


def _train_jaxpr(module: nn.Module, params, stats, one: tuple):
  """The jaxpr of ``module`` in training mode on the inputs ``one`` (traced
  abstractly), or None when it cannot take them."""

  def apply(params, stats, inputs):
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    return module.apply(variables, *inputs, train=True,
                        rngs={"dropout": jax.random.key(0)},
                        mutable=["batch_stats"] if stats else False)

  avals = lambda tree: jax.tree.map(_aval, tree)
  try:
    return jax.make_jaxpr(apply)(avals(params), avals(stats), one).jaxpr
  except Exception:  # pylint: disable=broad-except
    return None  # inputs the module cannot take: the step's checks say why


@_memoised
def _has_plain_convs(module: nn.Module, params, stats, one: tuple) -> bool:
  """Whether ``module`` in training mode has plain ``lax`` convs (slow
  gradients in loops on CPU)."""
  jaxpr = _train_jaxpr(module, params, stats, one)
  return jaxpr is not None and _convs_in(jaxpr, inside_custom_vjp=False)


@_memoised
def _has_convs(module: nn.Module, params, stats, one: tuple) -> bool:
  """Whether ``module`` in training mode has convolutions of any kind."""
  jaxpr = _train_jaxpr(module, params, stats, one)
  return jaxpr is not None and _convs_in(jaxpr, inside_custom_vjp=True)


def choose_d_loop(d_loop: str, discriminator: nn.Module, params, stats,
                  inputs: tuple) -> str:
  """``'scan'`` or ``'unroll'`` for ``GAN(d_loop=d_loop)`` on this backend.

  Args:
    d_loop: ``'auto'``, ``'scan'`` or ``'unroll'``.
    discriminator: D as the step applies it.
    params, stats: D's parameters and batch statistics (arrays or avals).
    inputs: D's inputs ``(x [B, ...],)`` or ``(x, y)`` (arrays or avals).
  """
  if d_loop != "auto":
    return d_loop
  slow = (jax.default_backend() == "cpu"
          and _has_plain_convs(discriminator, params, stats,
                               _one_example(inputs)))
  return "unroll" if slow else "scan"


def unrolled_scan(f, init, xs):
  """``jax.lax.scan(f, init, xs)`` unrolled into straight-line code."""
  length = jax.tree.leaves(xs)[0].shape[0]
  carry, outputs = init, []
  for i in range(length):
    carry, out = f(carry, jax.tree.map(lambda x: x[i], xs))
    outputs.append(out)
  return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)


def loop(d_loop: str):
  """The loop for a resolved ``d_loop``: ``jax.lax.scan`` or ``unrolled_scan``."""
  return jax.lax.scan if d_loop == "scan" else unrolled_scan


# ------------------------------------------------------------ populations

MEMBER_MAPS = ("auto", "vmap", "map")


def choose_member_map(member_map: str, players: Sequence[tuple],
                      size: int = 2) -> str:
  """``'vmap'`` or ``'map'`` for ``Population(member_map=member_map)`` here.

  Args:
    member_map: ``'auto'``, ``'vmap'`` or ``'map'``.
    players: ``(module, params, stats, inputs)`` of each model as the step
      applies it (one member's arrays or avals; inputs as in
      ``choose_d_loop``).
    size: the number of members; one is mapped: its single run's program
      (vmapped over one member, the small MLP's runner call ran at 0.84x,
      ``benchmarks/results/population_throughput_calls.md``).
  """
  if member_map != "auto":
    return member_map
  if size == 1:
    return "map"
  convs = (jax.default_backend() == "cpu"
           and any(_has_convs(module, params, stats, _one_example(inputs))
                   for module, params, stats, inputs in players))
  return "map" if convs else "vmap"


# ------------------------------------------------------------------- init


def initializer_key(key: jax.Array) -> jax.Array:
  """An ``rbg`` key seeded from ``key``, for drawing initial parameters.

  XLA:CPU compiles ``rbg`` initialisers several times faster than threefry
  ones (``benchmarks/results/init_time.md``). ``rbg`` draws under ``jax.vmap``
  differ from draws per key, so ``init_variables`` maps over batched keys
  one by one instead.
  """
  return jax.random.wrap_key_data(
      jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


def _init(module: nn.Module, key: jax.Array, inputs: tuple):
  """``module.init`` (eval mode) from an ``initializer_key``; under
  ``jax.vmap`` over keys, the same per key (``jax.lax.map`` over them)."""
  @jax.custom_batching.custom_vmap
  def init(key, inputs):
    return module.init({"params": initializer_key(key)}, *inputs, train=False)

  @init.def_vmap
  def per_key(axis_size, in_batched, key, inputs):
    del axis_size
    if any(jax.tree.leaves(in_batched[1])):
      raise ValueError("GAN.init maps over keys under jax.vmap; its example "
                       "batch must be the same for every key.")
    out = jax.lax.map(lambda k: init(k, inputs), key)
    return out, jax.tree.map(lambda _: True, out)

  return init(key, inputs)


_jitted_init = jax.jit(_init, static_argnums=0)


def init_variables(module: nn.Module, key: jax.Array, inputs: tuple):
  """``module.init`` (eval mode) jitted, the same per key under ``jax.vmap``;
  compiled once per (equal) module and input shape when it is hashable."""
  if not _hashable(module):
    return jax.jit(lambda key, inputs: _init(module, key, inputs))(key, inputs)
  return _jitted_init(module, key, inputs)
