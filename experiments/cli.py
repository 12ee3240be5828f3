"""Command-line error handling shared by the experiment scripts.

Every user mistake ends in one ``error: ...`` paragraph on stderr and exit
code 2, never a traceback: ``fail`` prints and exits; ``config_file_problem``
checks a ``--config=FILE`` before absl loads it (a missing file, a syntax
error, a value of the wrong type such as ``c.k = 1.5``, no ``get_config``),
so that absl's own error (a traceback in a flags error) is never shown;
``override_error`` explains a ``--config.FIELD=VALUE`` that cannot be applied.
"""

import importlib.util
import os
import sys
from typing import Optional

import ml_collections


def fail(message: str, code: int = 2):
  """Prints a one-paragraph error and exits without a traceback."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def config_path(argv) -> Optional[str]:
  """The file of ``--config=PATH[:args]`` in ``argv``, or None."""
  path = None
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
  return path.split(":")[0] if path is not None else None


def _exec_config(path: str):
  spec = importlib.util.spec_from_file_location("_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError("it defines no get_config()")
  return module.get_config()


def config_file_problem(argv) -> Optional[str]:
  """What is wrong with the ``--config`` file of ``argv`` (None: nothing)."""
  path = config_path(argv)
  if path is None:
    return None
  if not path:
    return ("--config is empty: name a config file, e.g. "
            "--config=experiments/configs/dcgan_digits.py.")
  if not os.path.isfile(path):
    return (f"the config file {path!r} does not exist (configs are in "
            "experiments/configs/).")
  try:
    config = _exec_config(path)
  except SyntaxError as e:
    return (f"the config file {path} has a syntax error at line {e.lineno}: "
            f"{e.msg}.")
  except Exception as e:  # pylint: disable=broad-except
    return (f"cannot load the config file {path}: {type(e).__name__}: "
            f"{str(e).strip()}")
  if not isinstance(config, ml_collections.ConfigDict):
    return (f"get_config() of {path} returns a {type(config).__name__}, not "
            "an ml_collections.ConfigDict (start from "
            "experiments/configs/base.py's get_config()).")
  return None


def _load_config_file(argv):
  """The config of the ``--config`` file named in ``argv``, or None."""
  path = config_path(argv)
  if not path or not os.path.isfile(path):
    return None
  try:
    return _exec_config(path)
  except Exception:  # pylint: disable=broad-except
    return None


def _field_exists(config, path: str) -> bool:
  node = config
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def override_error(argv, error: Exception) -> str:
  """A message for a ``--config.x=...`` override that could not be applied."""
  from experiments.builders import did_you_mean  # pylint: disable=g-import-not-at-top
  config = _load_config_file(argv)
  overrides = [a[len("--config."):].split("=", 1)[0]
               for a in argv if a.startswith("--config.")]
  if config is not None:
    unknown = [o for o in overrides if not _field_exists(config, o)]
    if unknown:
      path = unknown[0]
      parent_path, _, leaf = path.rpartition(".")
      parent = config
      for part in parent_path.split(".") if parent_path else []:
        parent = parent[part] if part in parent else parent
      known = sorted(parent.keys()) if isinstance(
          parent, ml_collections.ConfigDict) else []
      hint = did_you_mean(leaf, known)
      where = f"config.{parent_path}" if parent_path else "the config"
      return (f"unknown config field '{path}' in --config.{path}=...{hint} "
              f"Fields of {where}: {', '.join(known)}. New fields cannot be "
              "added from the command line; see experiments/configs/base.py.")
  return f"cannot apply the command-line config overrides: {error}"
