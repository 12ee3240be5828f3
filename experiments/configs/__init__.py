"""Experiment configs: one file per experiment, each with ``get_config()``.

``base.py`` lists every field the runner knows, with its default; the other
files start from it and change what their experiment needs. Use with
``python -m experiments.train --config=experiments/configs/NAME.py
--workdir=DIR [--config.FIELD=VALUE ...]``.
"""
