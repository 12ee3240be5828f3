"""Populations: many members of one GAN (seeds, hyper-parameters) in one compiled step.

A population is one ``GANState`` whose every leaf has a leading member axis
``N``, plus per-member hyper-parameters held as traced float32 ``[N]``
arrays, so that one compiled step trains every member: different seeds, and
different learning rates, Adam betas, penalty weights, EMA decays, ... What
shapes the compiled program (k, the models, the loss, the batch size) is
static and the same for every member.

Member i is the run ``gan.init(keys[i], ...)`` followed by ``gan.step``: it
computes what that run computes alone with member i's hyper-parameters
(bit for bit with ``member_map='map'``; ``jax.vmap`` batches the members'
matrix products, which rounds differently).

Hyper-parameters. ``sweepable(gan)`` lists the names a GAN can sweep:

* ``g_<name>``, ``d_<name>``: a hyper-parameter of a player's optimizer built
  with ``optax.inject_hyperparams`` (e.g. ``g_learning_rate``, ``d_b1``),
  written into its optax state (a schedule cannot be swept);
* ``ema_decay``, ``instance_noise_std``, ``ada_target``;
* ``<penalty>_<field>``: a float field of a penalty, also inside ``Lazy`` or
  ``Scheduled`` (``r1_gamma``, ``r2_gamma``, ``gradient_penalty_weight``);
* ``<term>_<field>``: a float field of a loss term
  (``auxiliary_classifier_weight``, ``feature_matching_weight``).

Many steps in one call (``run_steps``, the runner's calls): with
``member_map='map'`` the members run one after another, each its steps in a
row, as its single run's loop does; the population then costs what its
members cost run one after another (``benchmarks/population_throughput.py
--steps_per_call=100``), where one step of every member per loop iteration
pays to read and write every member's state each step.

The values in ``PopulationState.hparams`` are the truth: each step writes them
into the member's GAN and optimizer states (``bind``), so population-based
training (``ganjax.pbt``) changes a member's hyper-parameters by changing them.

References:
  Jaderberg et al., 2017, Population Based Training of Neural Networks
  (https://arxiv.org/abs/1711.09846); Lucic et al., 2018, Are GANs Created
  Equal? (https://arxiv.org/abs/1711.10337): results as spreads over seeds.
"""

import copy
import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganjax import backend
from ganjax import loops
from ganjax import penalties as penalties_lib
from ganjax import streams
from ganjax.gan import GAN, GANState

PLAYERS = ("g", "d")
_INJECT_STATES = (optax.InjectHyperparamsState,
                  optax.InjectStatefulHyperparamsState)
_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))


@flax.struct.dataclass
class PopulationState:
  """The state of every member: a pytree, checkpointable as a whole.

  Attributes:
    members: a ``GANState`` whose every leaf has a leading member axis ``[N]``.
    hparams: ``{name: float32 [N]}``, each member's swept hyper-parameters.
    alive: bool ``[N]``; False for a member frozen after its parameters or
      losses went non-finite.
  """
  members: GANState
  hparams: dict
  alive: jax.Array

  @property
  def step(self) -> jax.Array:
    """int32 scalar: the most generator updates any member has done (a frozen
    member's count stops), so that ``ganjax.loops`` runs a population as it
    runs a GAN."""
    return jnp.max(self.members.step)


def _with_fields(obj, **changes):
  """A shallow copy of the frozen dataclass ``obj`` with fields changed,
  without running its ``__post_init__``: traced values cannot be validated
  (the concrete ones were, by ``dataclasses.replace``, in ``Population``)."""
  new = copy.copy(obj)
  for field, value in changes.items():
    object.__setattr__(new, field, value)
  return new


def _float_fields(obj) -> list[str]:
  """The names of ``obj``'s dataclass fields that hold a Python float."""
  if not dataclasses.is_dataclass(obj):
    return []
  return [f.name for f in dataclasses.fields(obj)
          if isinstance(getattr(obj, f.name), float)]


def _set_innermost(penalty, field: str, value, replace):
  """``penalty`` with ``field`` of the penalty it wraps (through ``Lazy`` and
  ``Scheduled``) set to ``value``."""
  if isinstance(penalty, (penalties_lib.Lazy, penalties_lib.Scheduled)):
    return replace(penalty, penalty=_set_innermost(penalty.penalty, field,
                                                   value, replace))
  return replace(penalty, **{field: value})


def _innermost(penalty):
  while isinstance(penalty, (penalties_lib.Lazy, penalties_lib.Scheduled)):
    penalty = penalty.penalty
  return penalty


# A setter ``(gan, value, replace) -> gan``; ``replace`` is
# ``dataclasses.replace`` (validating) or ``_with_fields`` (traced values).
Setter = Callable[[GAN, Any, Callable], GAN]


def _gan_setters(gan: GAN) -> dict[str, Setter]:
  """The hyper-parameters of ``gan``'s own fields and parts, by name."""
  setters, seen = {}, {}

  def add(name, setter):
    seen[name] = seen.get(name, 0) + 1
    setters[name] = setter

  if gan.ema_decay is not None:
    add("ema_decay", lambda g, v, r: r(g, ema_decay=v))
  if gan.instance_noise is not None:
    add("instance_noise_std",
        lambda g, v, r: r(g, instance_noise=r(g.instance_noise, std=v)))
  if gan.ada is not None:
    add("ada_target", lambda g, v, r: r(g, ada=r(g.ada, target=v)))
  for i, penalty in enumerate(gan.penalties):
    single = callable(gan.penalty)
    for field in _float_fields(_innermost(penalty)):
      def set_penalty(g, v, r, i=i, field=field, single=single):
        new = _set_innermost(g.penalties[i], field, v, r)
        if single:
          return r(g, penalty=new)
        return r(g, penalty=g.penalties[:i] + (new,) + g.penalties[i + 1:])
      add(f"{penalties_lib.name_of(penalty)}_{field}", set_penalty)
  for i, term in enumerate(gan.loss_terms):
    for field in _float_fields(term):
      def set_term(g, v, r, i=i, field=field):
        terms = g.loss_terms
        return r(g, loss_terms=terms[:i] + (r(terms[i], **{field: v}),)
                 + terms[i + 1:])
      add(f"{penalties_lib.name_of(term)}_{field}", set_term)
  ambiguous = sorted(name for name, count in seen.items() if count > 1)
  return {name: setter for name, setter in setters.items()
          if name not in ambiguous}


def _inject_states(opt_state) -> list:
  """The ``optax.inject_hyperparams`` states inside ``opt_state``."""
  return [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, _INJECT_STATES))
          if isinstance(s, _INJECT_STATES)]


def optimizer_hparams(opt_state) -> tuple[set, set]:
  """``(constant, scheduled)``: names of the hyper-parameters held in the
  ``optax.inject_hyperparams`` states of ``opt_state`` (arrays or avals)."""
  constant, scheduled = set(), set()
  for state in _inject_states(opt_state):
    states = getattr(state, "hyperparams_states", {})
    for name in state.hyperparams:
      (scheduled if name in states else constant).add(name)
  return constant - scheduled, scheduled


def _optimizer_name(name: str) -> tuple[str, str] | None:
  """``'g_learning_rate'`` -> ``('g', 'learning_rate')``; None for others."""
  player, _, hparam = name.partition("_")
  return (player, hparam) if player in PLAYERS and hparam else None


def set_optimizer_hparams(members: GANState, hparams: Mapping) -> GANState:
  """``members`` with the optimizer hyper-parameters of ``hparams`` written
  into their ``optax.inject_hyperparams`` states.

  Works on one member (scalar values) and on a population's members (values
  ``[N]``, states with a member axis) alike.
  """
  for name, value in hparams.items():
    parsed = _optimizer_name(name)
    if parsed is None:
      continue
    player, hparam = parsed

    def write(state, hparam=hparam, value=value):
      if not isinstance(state, _INJECT_STATES) or hparam not in state.hyperparams:
        return state
      old = state.hyperparams[hparam]
      new = dict(state.hyperparams)
      # a copy: the state and ``hparams`` never share a (donated) buffer
      new[hparam] = jnp.array(value, old.dtype, copy=True).reshape(old.shape)
      return state._replace(hyperparams=new)

    field = f"{player}_opt_state"
    opt_state = jax.tree.map(write, getattr(members, field),
                             is_leaf=lambda x: isinstance(x, _INJECT_STATES))
    members = members.replace(**{field: opt_state})
  return members


def value_range(name: str) -> tuple[float, float]:
  """The closed interval of valid values of hyper-parameter ``name``: below 1
  for Adam's betas (``*_b1``, ``*_b2``) and ``ema_decay``, within [0, 1] for
  ``ada_target``, non-negative for the rest (learning rates, weights, std)."""
  if name == "ema_decay" or re.fullmatch(r"[gd]_b[12]", name):
    return 0.0, _BELOW_ONE
  if name == "ada_target":
    return 0.0, 1.0
  return 0.0, math.inf


def sweepable(gan: GAN, state: GANState | None = None) -> list[str]:
  """The hyper-parameter names ``gan`` can sweep (module docstring).

  The optimizers' names are listed when a ``state`` of ``gan`` is given (one
  member's, or a population's ``members``): optax states depend on the
  parameters.
  """
  names = list(_gan_setters(gan))
  if state is not None:
    for player in PLAYERS:
      constant, _ = optimizer_hparams(getattr(state, f"{player}_opt_state"))
      names += [f"{player}_{name}" for name in sorted(constant)]
  return names


# Names that shape the compiled step (refused with their own message).
_STATIC = {f.name for f in dataclasses.fields(GAN)} - {"ema_decay"} | {
    "batch_size", "image_size", "image_shape", "data_shape", "model",
    "models", "steps", "every", "anneal_steps", "speed_images"}


@dataclasses.dataclass(frozen=True, eq=False)
class Population:
  """N members of one GAN, trained together in one compiled step.

  Compared by identity (like ``GAN``), so ``jax.jit(population.step)`` works.

  Attributes:
    gan: the ``GAN`` every member plays.
    hparams: None or ``{name: N values}``, each member's value of a swept
      hyper-parameter (names from ``sweepable``; a GAN's static fields such
      as ``k`` or ``latent_dim`` cannot be swept).
    size: N; may be omitted when ``hparams`` is given.
    member_map: how the step maps over members: ``'vmap'`` (``jax.vmap``),
      ``'map'`` (``jax.lax.map``: one member after another in one program,
      bit-identical to the members' single steps) or ``'auto'`` (the
      default: ``'map'`` on CPU for models with convolutions, which run as
      grouped convolutions under ``vmap``, and for one member, else
      ``'vmap'``;
      ``ganjax.backend.choose_member_map``).
    shared_batch: True (the default): every member trains on the same batch
      ``[k, B, ...]`` (each with its own noise); False: the batch has a
      member axis, ``[N, k, B, ...]``, one batch per member.
    freeze_nonfinite: True (the default): ``step`` freezes a member that
      turns non-finite (see ``step``); the check and the selection of the
      frozen members' old state are an extra pass over the state. False
      skips both: ``alive`` stays True and a diverged member goes on NaN.
  """
  gan: GAN
  hparams: Mapping[str, Sequence[float]] | None = None
  size: int | None = None
  member_map: str = "auto"
  shared_batch: bool = True
  freeze_nonfinite: bool = True

  def __post_init__(self):
    hparams = {name: tuple(float(v) for v in np.ravel(np.asarray(values)))
               for name, values in (self.hparams or {}).items()}
    lengths = {len(values) for values in hparams.values()}
    size = self.size if self.size is not None else (
        lengths.pop() if len(lengths) == 1 else None)
    if size is None:
      raise ValueError("Population needs size=N (or hparams of N values "
                       "each).")
    if not isinstance(size, (int, np.integer)) or size < 1:
      raise ValueError(f"Population size must be an int >= 1, got {size!r}.")
    for name, values in hparams.items():
      if len(values) != size:
        raise ValueError(f"Population: hparams[{name!r}] has {len(values)} "
                         f"values, but the population has {size} members; "
                         f"give one value per member.")
    if self.member_map not in backend.MEMBER_MAPS:
      raise ValueError(f"Population member_map must be one of "
                       f"{backend.MEMBER_MAPS}, got {self.member_map!r}.")
    object.__setattr__(self, "hparams", hparams)
    object.__setattr__(self, "size", int(size))
    self._check_names()

  def _check_names(self) -> None:
    """Refuses static and unknown names; validates the concrete values."""
    setters = _gan_setters(self.gan)
    for name, values in self.hparams.items():
      low, high = value_range(name)
      bad = [v for v in values if not low <= v <= high]
      if bad:
        raise ValueError(f"Population: hparams[{name!r}] must lie in "
                         f"[{low}, {high}], got {bad}.")
      if name in setters:
        for value in values:  # the GAN's and its parts' own checks
          setters[name](self.gan, value, dataclasses.replace)
      elif _optimizer_name(name) is None:
        if name in _STATIC:
          raise ValueError(
              f"Population: {name!r} is static (it shapes the compiled step), "
              f"so it must be the same for all members; run separate "
              f"populations for different values of it.")
        raise ValueError(
            f"Population: unknown hyper-parameter {name!r}. This GAN can "
            f"sweep {sorted(setters)} and its optimizers' injected "
            f"hyper-parameters as g_<name> / d_<name> (e.g. g_learning_rate "
            f"with optax.inject_hyperparams(optax.adam)(learning_rate=...)).")

  def _check_optimizers(self, members: GANState) -> None:
    """Each swept ``g_``/``d_`` name must be a constant injected
    hyper-parameter of that player's optimizer."""
    for name in self.hparams:
      parsed = _optimizer_name(name)
      if parsed is None:
        continue
      player, hparam = parsed
      constant, scheduled = optimizer_hparams(
          getattr(members, f"{player}_opt_state"))
      if hparam in scheduled:
        raise ValueError(
            f"Population: {name!r} follows a schedule in {player}_optimizer; "
            f"a swept hyper-parameter is a constant per member: pass a number "
            f"for {hparam} to optax.inject_hyperparams.")
      if hparam not in constant:
        raise ValueError(
            f"Population: sweeping {name!r} needs {player}_optimizer built "
            f"with optax.inject_hyperparams, e.g. "
            f"optax.inject_hyperparams(optax.adam)({hparam}=...); "
            f"its injected hyper-parameters: {sorted(constant) or 'none'}.")

  # ------------------------------------------------------------------ parts

  def bind(self, hparams: Mapping) -> GAN:
    """The GAN of one member: ``gan`` with its (traced) scalar
    hyper-parameters; the optimizers' ones go into the state
    (``set_optimizer_hparams``)."""
    setters = _gan_setters(self.gan)
    gan = self.gan
    for name, value in hparams.items():
      if name in setters:
        gan = setters[name](gan, value, _with_fields)
    return gan

  def member(self, pstate: PopulationState, i) -> GANState:
    """Member ``i``'s ``GANState`` (``i`` may be traced)."""
    return jax.tree.map(lambda x: x[i], pstate.members)

  def member_keys(self, rng: jax.Array) -> jax.Array:
    """``[N]`` keys: ``rng`` itself when it holds N keys, else
    ``jax.random.split(rng, N)``."""
    rng = streams.as_key(rng)
    if rng.shape == ():
      return jax.random.split(rng, self.size)
    if rng.shape != (self.size,):
      raise ValueError(f"Population.init: give one key or {self.size} keys "
                       f"(one per member), got keys of shape {rng.shape}.")
    return rng

  def _map(self, members: GANState) -> str:
    """The resolved ``member_map`` for these members' models."""
    if self.member_map != "auto":
      return self.member_map
    gan = self.gan
    one = lambda tree: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), tree)
    g_params, g_stats = one(members.g_params), one(members.g_batch_stats)
    y = (jax.ShapeDtypeStruct((1,), jnp.int32),) if gan.conditional else ()
    z = (jax.ShapeDtypeStruct((1, gan.latent_dim), jnp.float32),) + y
    fake = jax.eval_shape(
        lambda p, s, inputs: gan.generator.apply(
            {"params": p, **({"batch_stats": s} if s else {})}, *inputs,
            train=False), g_params, g_stats, z)
    return backend.choose_member_map(self.member_map, (
        (gan.generator, g_params, g_stats, z),
        (gan.discriminator, one(members.d_params), one(members.d_batch_stats),
         (jax.ShapeDtypeStruct(fake.shape, jnp.float32),) + y)), self.size)

  def _over_members(self, fn, members: GANState, *per_member):
    """``fn(member, *xs)`` for every member, stacked: vmapped or mapped."""
    if self._map(members) == "vmap":
      return jax.vmap(fn)(members, *per_member)
    return jax.lax.map(lambda xs: fn(*xs), (members,) + per_member)

  # ------------------------------------------------------------------- init

  def init(self, rng: jax.Array, example_batch) -> PopulationState:
    """Initialises every member: member i is exactly ``gan.init(keys[i], ...)``.

    Args:
      rng: one key, split into N by ``jax.random.split(rng, N)``, or ``[N]``
        keys (e.g. ``jax.vmap(jax.random.key)(seeds)``), one per member.
      example_batch: as for ``GAN.init``.

    Returns:
      a ``PopulationState`` with every member alive.
    """
    keys = self.member_keys(rng)
    members = jax.vmap(lambda key: self.gan.init(key, example_batch))(keys)
    self._check_optimizers(members)
    hparams = {name: jnp.asarray(values, jnp.float32)
               for name, values in self.hparams.items()}
    return PopulationState(members=set_optimizer_hparams(members, hparams),
                           hparams=hparams,
                           alive=jnp.ones((self.size,), bool))

  # ------------------------------------------------------------------- step

  def step(self, pstate: PopulationState, batch):
    """One ``GAN.step`` of every member, each with its own hyper-parameters.

    A member whose losses, gradients, parameters or batch statistics turn
    non-finite in a step is frozen: it keeps the state it had before that
    step and ``alive`` turns False; the others go on.

    Args:
      pstate: a ``PopulationState``.
      batch: as for ``GAN.step`` (``[k, B, ...]`` or such a dict), shared by
        every member; with ``shared_batch=False`` every leaf has a leading
        member axis (``[N, k, B, ...]``).

    Returns:
      ``(new_pstate, metrics)``: ``GAN.step``'s metrics, float32 ``[N]``,
      and ``alive`` (1.0 for a member still training, 0.0 for a frozen one).
    """
    if not self.shared_batch:
      sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None
               for x in jax.tree.leaves(batch)}
      if sizes != {self.size}:
        raise ValueError(
            f"Population(shared_batch=False) steps on one batch per member: "
            f"every leaf [N={self.size}, k, B, ...], got leading sizes "
            f"{sorted(sizes, key=str)}; pass shared_batch=True to give all "
            f"members the same [k, B, ...] batch.")

    # Only the members' steps run inside the map: checks and selections
    # fused into its body would change how XLA rounds the step.
    def one(state, hparams, *member_batch):
      return self.bind(hparams).step(
          state, member_batch[0] if member_batch else batch)

    per_member = (pstate.hparams,) + (() if self.shared_batch else (batch,))
    members = set_optimizer_hparams(pstate.members, pstate.hparams)
    new, metrics = self._over_members(one, members, *per_member)
    if not self.freeze_nonfinite:
      return pstate.replace(members=new), dict(
          metrics, alive=pstate.alive.astype(jnp.float32))
    members, metrics, alive = jax.vmap(_kept)(new, members, metrics,
                                              pstate.alive)
    return pstate.replace(members=members, alive=alive), metrics

  def run_steps(self, pstate: PopulationState, batch_at: Callable,
                num_steps, max_steps: int):
    """``num_steps`` steps of every member, traced in one call.

    The members' counterpart of ``ganjax.loops.fori_steps`` for a many-step
    call (``jax.jit`` it, or wrap it with ``ganjax.parallel``). With
    ``member_map='map'`` the members run one after another, each its
    ``num_steps`` steps in a row: member i's loop is the loop of its single
    run, so the population costs what its members cost one after another,
    and a member's state is read and written once per call, not once per
    step. With ``'vmap'`` every step steps all members (``step``).

    Args:
      pstate: a ``PopulationState``.
      batch_at: ``(step, member) -> batch``: with ``member=None`` the batch
        ``step`` takes (shared, or ``[N, k, B, ...]`` with
        ``shared_batch=False``); with an int32 scalar ``member``, that
        member's ``[k, B, ...]`` (which may ignore ``member`` when shared).
      num_steps: int32 scalar, possibly traced, at most ``max_steps``.
      max_steps: static, the length of the stacked metrics.

    Returns:
      ``(new_pstate, metrics)``: ``step``'s metrics stacked to
      ``[max_steps, N]``, zeros from ``num_steps`` on. A member freezes as
      in ``step``, at the step it turned non-finite.
    """
    members = pstate.members
    if self._map(members) == "vmap":
      return loops.fori_steps(
          lambda ps: self.step(ps, batch_at(ps.step, None)), pstate,
          num_steps, max_steps)

    def member_run(args):
      state, hparams, alive, member = args
      gan = self.bind(hparams)

      def one(carry):
        state, alive = carry
        new, metrics = gan.step(state, batch_at(state.step, member))
        if not self.freeze_nonfinite:
          return (new, alive), dict(metrics, alive=alive.astype(jnp.float32))
        state, metrics, alive = _kept(new, state, metrics, alive)
        return (state, alive), metrics

      (state, alive), metrics = loops.fori_steps(one, (state, alive),
                                                 num_steps, max_steps)
      return state, alive, metrics

    members, alive, metrics = jax.lax.map(member_run, (
        set_optimizer_hparams(members, pstate.hparams), pstate.hparams,
        pstate.alive, jnp.arange(self.size, dtype=jnp.int32)))
    metrics = jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics)
    return pstate.replace(members=members, alive=alive), metrics

  # ----------------------------------------------------------------- sample

  def generate(self, pstate: PopulationState, z: jax.Array, labels=None,
               member=None, use_ema: bool = True) -> jax.Array:
    """``GAN.generate`` of member ``member`` (``[B, ...]``), or of every member
    on the same latents (``[N, B, ...]``) when ``member`` is None."""
    if member is not None:
      return self.gan.generate(self.member(pstate, member), z, labels, use_ema)
    return self._over_members(
        lambda s: self.gan.generate(s, z, labels, use_ema), pstate.members)

  def sample(self, pstate: PopulationState, rng: jax.Array,
             num: int | None = None, labels=None, member=None,
             use_ema: bool = True) -> jax.Array:
    """``GAN.sample`` of member ``member`` (``[num, ...]``), or of every member
    from the same key, hence the same latents (``[N, num, ...]``), when
    ``member`` is None."""
    if member is not None:
      return self.gan.sample(self.member(pstate, member), rng, num, labels,
                             use_ema)
    return self._over_members(
        lambda s: self.gan.sample(s, rng, num, labels, use_ema),
        pstate.members)


def _kept(new: GANState, old: GANState, metrics: dict, alive: jax.Array):
  """One member's step outcome: ``(state, metrics, alive)``, frozen at
  ``old`` (``alive`` False) when it turns non-finite.

  The metrics hold the losses and both gradient norms (non-finite when a
  gradient is); the parameters and batch statistics catch an update that
  overflows. Optimizer states and the EMA follow from these, so they are
  not read again (a pass over them costs as much as a select).
  """
  checked = (metrics, new.g_params, new.d_params, new.g_batch_stats,
             new.d_batch_stats)
  alive = alive & jnp.all(jnp.stack([
      jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(checked)
      if jnp.issubdtype(x.dtype, jnp.inexact)]))
  state = jax.tree.map(lambda n, o: jnp.where(alive, n, o), new, old)
  return state, dict(metrics, alive=alive.astype(jnp.float32)), alive


def spread(values) -> tuple[float, float]:
  """``(mean, std)`` of per-member values (std over members, ddof 1; 0.0 for
  one member)."""
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return float(values.mean()), std


def mean_std(values) -> str:
  """``'mean ± std'`` of per-member values (``spread``)."""
  mean, std = spread(values)
  return f"{mean:.4g} ± {std:.2g}"
