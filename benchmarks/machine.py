"""What a benchmark result file records about the machine it ran on."""

import os
import platform


def cpu_name() -> str:
  """The CPU model from /proc/cpuinfo (or the platform's best guess)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def load_average() -> str:
  """The 1, 5 and 15 minute load averages, for results from shared machines."""
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"
