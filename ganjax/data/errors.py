"""The errors of the data package: each a ``ValueError`` whose message names the fix."""


class DatasetNotFoundError(ValueError):
  """The data set is not on this machine; the message says how to get it."""


class UnknownDatasetError(ValueError):
  """The name is neither a built-in source, a path nor a TFDS data set."""


class DataError(ValueError):
  """The files of a data set cannot be used as they are (an image folder with
  no readable image, nested too deep, ...); the message says what to change."""
